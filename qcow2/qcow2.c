/* The qcow2 format driver (read side): open, close, describe, status, read. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

static void qcow2_close (void *st);

/* L1 size was checked against 32 MiB and the file before we get here. */
static int
load_l1 (struct qcow2_state *s)
{
  size_t i, n = s->h.l1_size;
  int r;

  if (n == 0)
    return 0;
  s->l1 = malloc (n * sizeof *s->l1);
  if (s->l1 == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (s->io, s->l1, n * sizeof *s->l1, s->h.l1_table_offset);
  if (r < 0)
    return r;
  for (i = 0; i < n; i++)
    s->l1[i] = get_be64 (&s->l1[i]);
  return 0;
}

/* Start reading the L2 tables the L1 table names, all at once: a job's
 * first walk over a deep chain otherwise waits for each layer's tables in
 * turn when they are not in the page cache. Only the part of a table that
 * maps the virtual size, adjacent parts in one request, 1 MiB and 64
 * requests a layer at most; entries that are not valid are left to be
 * refused at use. */
#define L2_PREFETCH_BYTES (1u << 20)
#define L2_PREFETCH_CALLS 64u

static void
prefetch_l2 (struct qcow2_state *s)
{
  uint64_t per_table = (uint64_t) s->cluster_size << s->l2_bits;
  uint64_t start = 0, len = 0, total = 0;
  unsigned calls = 0;
  size_t i;

  for (i = 0; i < s->h.l1_size && total < L2_PREFETCH_BYTES; i++) {
    uint64_t off = s->l1[i] & QCOW2_OFFSET_MASK, left, n;

    if (off == 0 || off % s->cluster_size
        || !range_within (off, s->cluster_size, s->file_size)
        || i * per_table >= s->h.size)   /* i < l1_size <= 2^22 */
      continue;
    /* Entries for the guest bytes this table maps. */
    left = DIV_ROUND_UP (s->h.size - i * per_table, s->cluster_size);
    n = MIN ((uint64_t) s->cluster_size, left * s->l2_entry_size);
    n = MIN (n, L2_PREFETCH_BYTES - total);
    total += n;
    if (len && off == start + len) {
      len += n;
      continue;
    }
    if (len) {
      if (calls++ == L2_PREFETCH_CALLS)
        return;
      io_willneed (s->io, start, len);
    }
    start = off;
    len = n;
  }
  if (len && calls < L2_PREFETCH_CALLS)
    io_willneed (s->io, start, len);
}

static int
l2_cache_init (struct qcow2_state *s)
{
  s->l2_slice_bits = s->l2_bits;
  return qcow2_l2_cache_init (&s->l2, qcow2_cache_slice (s, &s->l2_slice_bits));
}

static int
qcow2_open (struct io *io, unsigned flags, void **stp)
{
  struct qcow2_state *s;
  int r;

  *stp = NULL;
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return set_error (ENOMEM, "out of memory");
  s->io = io;
  s->name = io->name;
  s->flags = flags;
  r = io_get_size (io, &s->file_size);
  if (r == 0)
    r = qcow2_parse_header (s);
  if (r == 0)
    r = load_l1 (s);
  if (r == 0 && !(flags & FMT_OPEN_DESCRIBE))
    prefetch_l2 (s);
  if (r == 0)
    r = qcow2_read_snapshots (s);
  if (r == 0)
    r = l2_cache_init (s);
  if (r == 0 && (flags & FMT_OPEN_WRITE))
    r = qcow2_writer_open (s);
  if (r < 0)
    {
      qcow2_close (s);
      return r;
    }
  *stp = s;
  return 0;
}

static void
qcow2_close (void *st)
{
  struct qcow2_state *s = st;

  if (s == NULL)
    return;
  qcow2_writer_close (s);
  qcow2_l2_cache_free (&s->l2);
  qcow2_free_snapshots (s);
  qcow2_free_bitmaps (s);
  qcow2_free_refcounts (s);
  qcow2_free_header (s);
  if (s->zstd_dctx)
    qcow2_zstd_free (s->zstd_dctx);
  free (s->cbuf);
  free (s->dbuf);
  free (s->l1);
  free (s);
}

/* Bound the L2 cache to about `bytes`: layers read in order (a job's
 * backing files) need a table or two each, and a deep chain has many. */
static void
qcow2_set_cache_limit (void *st, uint64_t bytes)
{
  struct qcow2_state *s = st;
  uint64_t n = bytes / s->l2.table_size;

  qcow2_l2_cache_limit (&s->l2, n > UINT_MAX ? UINT_MAX : (unsigned) n);
}

static void
qcow2_describe (void *st, struct qc_info *info)
{
  struct qcow2_state *s = st;
  const struct qcow2_header *h = &s->h;
  uint32_t f = 0;

  info->format = "qcow2";
  /* qemu counts whole 512-byte sectors: an odd size in the header is
   * rounded down, and so is the guest view. */
  info->virtual_size = h->size & ~(uint64_t) 511;
  info->cluster_size = s->cluster_size;
  info->qcow2_version = h->version;
  info->refcount_bits = 1u << h->refcount_order;
  info->compression_type =
    h->compression_type == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib";
  info->backing_filename = s->backing_file;
  info->backing_format = s->backing_format;
  info->data_file = s->data_file;
  info->encryption = h->crypt_method;
  info->nb_snapshots = h->nb_snapshots;
  info->nb_bitmaps = s->nb_bitmaps;

  if (s->backing_file)
    f |= QC_INFO_HAS_BACKING;
  if (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)
    f |= QC_INFO_DIRTY;
  if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
    f |= QC_INFO_CORRUPT;
  if (h->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS)
    f |= QC_INFO_LAZY_REFCOUNTS;
  if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2)
    f |= QC_INFO_EXTENDED_L2;
  if (h->crypt_method != QCOW2_CRYPT_NONE)
    f |= QC_INFO_ENCRYPTED;
  if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
    {
      f |= QC_INFO_DATA_FILE;
      if (h->autoclear_features & QCOW2_AUTOCLEAR_DATA_RAW)
        f |= QC_INFO_DATA_FILE_RAW;
    }
  if (s->nb_bitmaps)
    f |= QC_INFO_BITMAPS;
  info->flags = f;
}

/* The L2 entry for guest offset off, in the cached slice of its table
 * (*p NULL: the L1 entry is empty); *left: the entries from it to the
 * slice's end. */
static int
l2_entry_at (struct qcow2_state *s, uint64_t off, const unsigned char **p,
             uint64_t *left)
{
  uint64_t l1_idx = off >> (s->h.cluster_bits + s->l2_bits), l2_off;
  uint64_t idx = (off >> s->h.cluster_bits) & ((1ull << s->l2_bits) - 1);
  uint64_t in_slice = idx & ((1ull << s->l2_slice_bits) - 1);
  const unsigned char *slice;
  int r;

  *p = NULL;
  *left = 0;
  if (l1_idx >= s->h.l1_size)
    return set_image_error (s->name, EINVAL,
                            "guest offset 0x%" PRIx64 " is beyond the L1 "
                            "table", off);
  r = qcow2_l1_decode (&s->g, l1_idx, s->l1[l1_idx], &l2_off);
  if (r < 0 || l2_off == 0)
    return r;
  r = qcow2_l2_cache_get (&s->l2, s->io,
                          l2_off + (idx >> s->l2_slice_bits)
                          * (uint64_t) s->l2.table_size, &slice);
  if (r < 0)
    return r;
  *p = slice + in_slice * s->l2_entry_size;
  *left = (1ull << s->l2_slice_bits) - in_slice;
  return 0;
}

int
qcow2_map_at (struct qcow2_state *s, uint64_t off, struct qcow2_map *m,
              uint64_t *unit_len)
{
  unsigned shift = s->h.cluster_bits + s->l2_bits;  /* bytes per L1 entry */
  uint64_t entry, bitmap = 0, left;
  const unsigned char *p;
  unsigned sc = 0, unit_bits = s->sc_bits;
  int r;

  if ((r = l2_entry_at (s, off, &p, &left)) < 0)
    return r;
  if (p == NULL)
    {
      memset (m, 0, sizeof *m);
      m->type = EXT_UNALLOC;
      *unit_len = (((off >> shift) + 1) << shift) - off;
      return 0;
    }
  entry = get_be64 (p);
  if (s->g.extended_l2)
    {
      bitmap = get_be64 (p + 8);
      sc = (off >> s->sc_bits) & (QCOW2_SUBCLUSTERS - 1);
    }
  r = qcow2_l2_classify (&s->g, off, entry, bitmap, sc, m);
  if (r < 0)
    return r;
  if (m->type == EXT_COMPRESSED)
    unit_bits = s->h.cluster_bits;   /* compressed clusters are whole */
  if (m->has_offset)
    m->host_off += off & ((1ull << unit_bits) - 1);
  *unit_len = (((off >> unit_bits) + 1) << unit_bits) - off;
  return 0;
}

static int
check_readable (struct qcow2_state *s)
{
  if (s->unreadable)
    return set_image_error (s->name, ENOTSUP, "%s", s->unreadable);
  return 0;
}

/* Whether the mapping m continues extent e. */
static bool
continues (const struct layer_extent *e, const struct qcow2_map *m)
{
  if (m->type != e->type || m->has_offset != e->has_offset)
    return false;
  return !e->has_offset || m->host_off == e->host_off + e->len;
}

/* Grow e from the cluster-aligned *cur over the rest of its standard L2
 * table slice, reading entries straight from it: the answers qcow2_map_at
 * gives cluster by cluster, without an L1 and cache lookup for each (a deep
 * chain asks every layer about most of the disk). Returns true when e ends
 * inside the slice; false at the slice's end, at `end`, or where the
 * per-cluster path should look (it reports any error there). */
static bool
extend_in_table (struct qcow2_state *s, struct layer_extent *e,
                 uint64_t *cur, uint64_t end)
{
  uint64_t left, i, step;
  const unsigned char *p;
  struct qcow2_map m;

  if (l2_entry_at (s, *cur, &p, &left) < 0 || p == NULL)
    return false;
  for (i = 0; i < left && *cur < end; i++) {
    uint64_t entry = get_be64 (p + i * 8);
    /* Empty entries, most of a deep chain's tables, skip the classifier
     * (with it, a 64-layer map ran 2.4 times the instructions). */
    if (entry == 0) {
      memset (&m, 0, sizeof m);
      m.type = EXT_UNALLOC;
    }
    else if (qcow2_l2_classify (&s->g, *cur, entry, 0, 0, &m) < 0)
      return false;
    if (!continues (e, &m))
      return true;
    step = MIN (s->cluster_size, end - *cur);
    e->len += step;
    *cur += step;
  }
  return false;
}

/* The extent at off, and the mapping of its first (sub)cluster. A reader
 * takes compressed clusters one at a time: with one_compressed the extent
 * ends after the first. */
static int
walk (struct qcow2_state *s, uint64_t off, uint64_t len,
      struct layer_extent *e, struct qcow2_map *first, bool one_compressed)
{
  uint64_t cur = off, end = off + len, unit;
  struct qcow2_map m;
  int r;

  r = qcow2_map_at (s, cur, first, &unit);
  if (r < 0)
    return r;
  e->type = first->type;
  e->has_offset = first->has_offset;
  e->host_off = first->has_offset ? first->host_off : 0;
  e->len = MIN (unit, end - cur);
  cur += e->len;
  if (one_compressed && e->type == EXT_COMPRESSED)
    return 0;
  while (cur < end)
    {
      if (!s->g.extended_l2 && e->type != EXT_COMPRESSED
          && extend_in_table (s, e, &cur, end))
        break;
      if (cur >= end)
        break;
      /* A bad entry further on ends the extent here; the caller meets the
       * error when it asks about that offset. */
      if (qcow2_map_at (s, cur, &m, &unit) < 0)
        break;
      if (!continues (e, &m))
        break;
      unit = MIN (unit, end - cur);
      e->len += unit;
      cur += unit;
    }
  return 0;
}

static int
qcow2_status (void *st, uint64_t off, uint64_t len, struct layer_extent *e)
{
  struct qcow2_state *s = st;
  struct qcow2_map first;
  int r;

  r = check_readable (s);
  if (r < 0)
    return r;
  if (len == 0 || !range_within (off, len, s->h.size))
    return set_image_error (s->name, EINVAL,
                            "status of 0x%" PRIx64 "+%" PRIu64
                            " outside the virtual size", off, len);
  r = walk (s, off, len, e, &first, false);
  if (r == 0 && e->type == EXT_DATA && e->has_offset) {
    bool prealloc;
    r = qcow2_metadata_preallocated (s, &prealloc);
    e->recurse = r == 0 && prealloc;
  }
  return r;
}

/* Decompress the cluster m describes into s->dbuf unless it is there. */
static int
load_compressed (struct qcow2_state *s, const struct qcow2_map *m)
{
  int r;

  if (s->dcache_valid && s->dcache_off == m->comp_off
      && s->dcache_len == m->comp_len)
    return 0;
  if (s->dbuf == NULL)
    {
      /* comp_len <= (2^(cluster_bits-8)) * 512 = 2 clusters. */
      s->cbuf = malloc (2 * (size_t) s->cluster_size);
      s->dbuf = malloc (s->cluster_size);
      if (s->cbuf == NULL || s->dbuf == NULL)
        return set_error (ENOMEM, "out of memory");
    }
  s->dcache_valid = false;
  r = io_pread (s->io, s->cbuf, m->comp_len, m->comp_off);
  if (r < 0)
    return r;
  if (s->h.compression_type == QCOW2_COMPRESS_ZSTD)
    r = qcow2_decompress_zstd (s->name, &s->zstd_dctx, s->dbuf,
                               s->cluster_size, s->cbuf, m->comp_len);
  else
    r = qcow2_decompress_zlib (s->name, s->dbuf, s->cluster_size,
                               s->cbuf, m->comp_len);
  if (r < 0)
    return r;
  s->dcache_valid = true;
  s->dcache_off = m->comp_off;
  s->dcache_len = m->comp_len;
  return 0;
}

/* [off, off+n) inside the virtual size: this layer's data, and where it
 * has none either zeroes or (through) the view below it. */
int
qcow2_read_range (struct qcow2_state *s, void *buf, size_t n, uint64_t off,
                  bool through)
{
  unsigned char *p = buf;
  struct layer_extent e;
  struct qcow2_map first;
  uint64_t in_cluster;
  size_t k;
  int r;

  while (n > 0)
    {
      r = walk (s, off, n, &e, &first, true);
      if (r < 0)
        return r;
      k = (size_t) e.len;
      switch (e.type)
        {
        case EXT_DATA:
          r = io_pread (s->io, p, k, e.host_off);
          break;
        case EXT_COMPRESSED:
          in_cluster = off & (s->cluster_size - 1);
          k = (size_t) MIN ((uint64_t) k, s->cluster_size - in_cluster);
          r = load_compressed (s, &first);
          if (r == 0)
            memcpy (p, s->dbuf + in_cluster, k);
          break;
        case EXT_UNALLOC:
          if (through && s->br.read)
            {
              r = s->br.read (s->br.opaque, p, k, off);
              break;
            }
          /* fall through */
        default:
          memset (p, 0, k);
          break;
        }
      if (r < 0)
        return r;
      p += k;
      off += k;
      n -= k;
    }
  return 0;
}

static int
qcow2_read (void *st, void *buf, size_t n, uint64_t off)
{
  struct qcow2_state *s = st;
  int r;

  r = check_readable (s);
  if (r < 0)
    return r;
  if (!range_within (off, n, s->h.size))
    return set_image_error (s->name, EINVAL,
                            "read of %zu bytes at 0x%" PRIx64
                            " outside the virtual size", n, off);
  return qcow2_read_range (s, buf, n, off, false);
}

const struct format_ops qcow2_format = {
  .name = "qcow2",
  .open = qcow2_open,
  .close = qcow2_close,
  .set_cache_limit = qcow2_set_cache_limit,
  .describe = qcow2_describe,
  .snapshot = qcow2_snapshot_op,
  .bitmap = qcow2_bitmap_op,
  .status = qcow2_status,
  .read = qcow2_read,
  .create = qcow2_create_op,
  .set_backing_reader = qcow2_set_backing_reader_op,
  .pwrite = qcow2_pwrite_op,
  .set_data_sink = qcow2_set_data_sink_op,
  .pwrite_compressed = qcow2_pwrite_compressed_op,
  .zero = qcow2_zero_op,
  .discard = qcow2_discard_op,
  .unmap = qcow2_unmap_op,
  .flush = qcow2_flush_op,
  .set_backing = qcow2_set_backing_op,
  .resize = qcow2_resize_op,
  .check = qcow2_check_op,
};
