/* Refcounts: lookups, updates of every width, refcount block cache, table growth, metadata preallocation test. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

#define REFTABLE_OFFSET_MASK 0xfffffffffffffe00ull   /* bits 9-63 */
/* Refcount blocks kept in memory: enough for a long sequential run. */
#define REFBLOCK_CACHE_BYTES (4u << 20)
#define REFBLOCK_CACHE_MAX_SLOTS 256u

/* log2 of the refcounts in one block: cluster bits + 3 - order >= 6. */
static unsigned
block_bits (const struct qcow2_state *s)
{
  return s->h.cluster_bits + 3 - s->h.refcount_order;
}

static uint64_t
refcount_max (const struct qcow2_state *s)
{
  unsigned bits = 1u << s->h.refcount_order;

  return bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
}


/* Refcount blocks hold only increments or decrements already allowed to
 * reach the disk (see qcow2_apply_pending_frees): write them any time. */
static int
rb_evict_dirty (void *opaque)
{
  struct qcow2_state *s = opaque;
  int r;

  r = qcow2_l2_cache_write_dirty (&s->rb, s->io);
  s->unsynced = true;
  return r;
}

/* The table was checked at open: <= 8 MiB and inside the file. */
static int
load_reftable (struct qcow2_state *s)
{
  size_t i, n;
  int r;

  n = ((size_t) s->h.refcount_table_clusters << s->h.cluster_bits) / 8;
  /* Read-only, only the clusters inside the file are ever asked about:
   * deep chains of large-cluster layers would hold megabytes each. */
  if (!(s->flags & FMT_OPEN_WRITE))
    n = MIN (n, (size_t) MAX (1, DIV_ROUND_UP (DIV_ROUND_UP (s->file_size,
                                                          s->cluster_size),
                                             1ull << block_bits (s))));
  s->reftable = malloc (n * sizeof *s->reftable);
  if (s->reftable == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (s->io, s->reftable, n * sizeof *s->reftable,
                s->h.refcount_table_offset);
  if (r < 0)
    {
      free (s->reftable);
      s->reftable = NULL;
      return r;
    }
  for (i = 0; i < n; i++)
    s->reftable[i] = get_be64 (&s->reftable[i]);
  s->reftable_entries = n;
  s->rt_off = s->h.refcount_table_offset;
  s->rt_clusters = s->h.refcount_table_clusters;
  return 0;
}

int
qcow2_refcount_init (struct qcow2_state *s)
{
  uint32_t slice;
  unsigned n;
  int r;

  if (s->reftable == NULL)
    {
      r = load_reftable (s);
      if (r < 0)
        return r;
    }
  if (s->rb_ready)
    return 0;
  s->rb_slice_bits = block_bits (s);
  slice = qcow2_cache_slice (s, &s->rb_slice_bits);
  n = REFBLOCK_CACHE_BYTES / slice;
  r = qcow2_l2_cache_init_n (&s->rb, slice, MIN (n, REFBLOCK_CACHE_MAX_SLOTS));
  if (r < 0)
    return r;
  s->rb.evict_dirty = rb_evict_dirty;
  s->rb.opaque = s;
  s->rb_ready = true;
  return 0;
}

/* Slice `slice` of refcount block number index (a writer's slices are
 * whole blocks), or NULL (*b) when the block does not exist. */
static int
get_block (struct qcow2_state *s, uint64_t index, uint64_t slice, bool mut,
           unsigned char **b)
{
  uint64_t off;
  int r;

  *b = NULL;
  if (index >= s->reftable_entries)
    return 0;
  off = s->reftable[index] & REFTABLE_OFFSET_MASK;
  if (off == 0)
    return 0;
  if (!IS_ALIGNED (off, s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "misaligned refcount block offset 0x%" PRIx64
                            " in refcount table entry %" PRIu64, off, index);
  if (!range_within (off, s->cluster_size, s->file_size))
    return set_image_error (s->name, EINVAL,
                            "refcount table entry %" PRIu64 " points past "
                            "end of file (0x%" PRIx64 ")", index, off);
  off += slice * s->rb.table_size;
  if (mut)
    return qcow2_l2_cache_get_mut (&s->rb, s->io, off, b);
  r = qcow2_l2_cache_get (&s->rb, s->io, off, (const unsigned char **) b);
  return r;
}

int
qcow2_get_refcount (struct qcow2_state *s, uint64_t cluster, uint64_t *rc)
{
  unsigned bb = block_bits (s);
  unsigned char *b;
  int r;

  *rc = 0;
  r = qcow2_refcount_init (s);
  if (r < 0)
    return r;
  r = get_block (s, cluster >> bb,
                 (cluster & ((1ull << bb) - 1)) >> s->rb_slice_bits, false, &b);
  if (r < 0 || b == NULL)
    return r;
  *rc = qcow2_rb_get (b, s->h.refcount_order,
                      cluster & ((1ull << s->rb_slice_bits) - 1));
  return 0;
}

static void
rt_dirty (struct qcow2_state *s, uint64_t index)
{
  if (s->rt_dirty_hi == s->rt_dirty_lo)
    {
      s->rt_dirty_lo = index;
      s->rt_dirty_hi = index + 1;
      return;
    }
  s->rt_dirty_lo = MIN (s->rt_dirty_lo, index);
  s->rt_dirty_hi = MAX (s->rt_dirty_hi, index + 1);
}

/*
 * A bigger refcount table, in memory only: it reaches the disk (whole, at
 * its new place, then the header) in qcow2_refcount_writeback, before any
 * metadata that needs it. Until then the old table stays in use on disk.
 */
static int
grow_reftable (struct qcow2_state *s, uint64_t need_index)
{
  uint64_t epc = s->cluster_size / 8, old_n = s->reftable_entries;
  uint64_t new_n = MAX (need_index + 1, old_n + old_n / 2);
  uint64_t ncl, t, i, *nt;
  unsigned bb = block_bits (s);
  int r;

  for (;;)
    {
      ncl = DIV_ROUND_UP (new_n, epc);
      if (ncl * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
        return set_image_error (s->name, EFBIG,
                                "refcount table would exceed 8 MiB: "
                                "image too large for cluster size %" PRIu32
                                " and refcount width %u", s->cluster_size,
                                1u << s->h.refcount_order);
      r = qcow2_alloc_noref (s, ncl, &t);
      if (r < 0)
        return r;
      /* Cover the table itself and the blocks that describe it, which
       * land right after it. */
      if (new_n >= ((t + ncl + 4) >> bb) + 1)
        break;
      new_n = ((t + ncl + 4) >> bb) + 1;
    }
  new_n = ncl * epc;
  nt = calloc (new_n, sizeof *nt);
  if (nt == NULL)
    return set_error (ENOMEM, "out of memory");
  memcpy (nt, s->reftable, old_n * sizeof *nt);
  free (s->reftable);
  s->reftable = nt;
  s->reftable_entries = new_n;
  /* A table that never reached the disk is simply dropped. */
  if (s->rt_off != s->h.refcount_table_offset)
    {
      r = qcow2_free_later (s, s->rt_off >> s->h.cluster_bits,
                            s->rt_clusters);
      if (r < 0)
        return r;
    }
  s->rt_off = t << s->h.cluster_bits;
  s->rt_clusters = (uint32_t) ncl;
  s->rt_dirty_lo = s->rt_dirty_hi = 0;
  qcow2_note_file_end (s, (t + ncl) << s->h.cluster_bits);
  for (i = 0; i < ncl; i++)
    {
      r = qcow2_refcount_add (s, t + i, 1);
      if (r < 0)
        return r;
    }
  return 0;
}

/* A new, empty refcount block for index: self-describing when it lands
 * in the range it covers, else counted by another block. */
static int
new_block (struct qcow2_state *s, uint64_t index, unsigned char **b)
{
  unsigned bb = block_bits (s);
  uint64_t c;
  int r;

  r = qcow2_alloc_noref (s, 1, &c);
  if (r < 0)
    return r;
  qcow2_note_file_end (s, (c + 1) << s->h.cluster_bits);
  if ((c >> bb) != index)
    {
      r = qcow2_refcount_add (s, c, 1);
      if (r < 0)
        return r;
      /* That may have grown the table, never past index's entry. */
    }
  r = qcow2_l2_cache_get_new (&s->rb, s->io, c << s->h.cluster_bits, b);
  if (r < 0)
    return r;
  if ((c >> bb) == index)
    qcow2_rb_put (*b, s->h.refcount_order, c & ((1ull << bb) - 1), 1);
  s->reftable[index] = c << s->h.cluster_bits;
  if (s->rt_off == s->h.refcount_table_offset)
    rt_dirty (s, index);
  return 0;
}

/* The block holding cluster's refcount, created if create. */
static int
block_for (struct qcow2_state *s, uint64_t cluster, bool create,
           unsigned char **b)
{
  uint64_t index = cluster >> block_bits (s);
  int r;

  r = qcow2_refcount_init (s);
  if (r < 0)
    return r;
  if (index >= s->reftable_entries && create)
    {
      r = grow_reftable (s, index);
      if (r < 0)
        return r;
    }
  r = get_block (s, index, 0, true, b);
  if (r < 0 || *b != NULL || !create)
    return r;
  return new_block (s, index, b);
}

int
qcow2_refcount_prepare (struct qcow2_state *s, uint64_t cluster)
{
  unsigned char *b;

  return block_for (s, cluster, true, &b);
}

int
qcow2_refcount_add (struct qcow2_state *s, uint64_t cluster, int delta)
{
  unsigned bb = block_bits (s), order = s->h.refcount_order;
  uint64_t i = cluster & ((1ull << bb) - 1), v;
  unsigned char *b;
  int r;

  r = block_for (s, cluster, delta > 0, &b);
  if (r < 0)
    return r;
  v = b ? qcow2_rb_get (b, order, i) : 0;
  if (delta < 0 && v == 0)
    return set_image_error (s->name, EIO,
                            "refcount of cluster 0x%" PRIx64 " would drop "
                            "below zero (image corrupt?)",
                            cluster << s->h.cluster_bits);
  if (delta > 0 && v == refcount_max (s))
    return set_image_error (s->name, ERANGE,
                            "refcount of cluster 0x%" PRIx64 " would "
                            "overflow %u bits", cluster << s->h.cluster_bits,
                            1u << order);
  qcow2_rb_put (b, order, i, delta > 0 ? v + 1 : v - 1);
  return 0;
}

int
qcow2_refcount_set (struct qcow2_state *s, uint64_t cluster, uint64_t value)
{
  unsigned bb = block_bits (s);
  unsigned char *b;
  int r;

  if (value > refcount_max (s))
    return set_image_error (s->name, ERANGE,
                            "refcount %" PRIu64 " does not fit in %u bits",
                            value, 1u << s->h.refcount_order);
  r = block_for (s, cluster, value != 0, &b);
  if (r < 0 || b == NULL)
    return r;
  qcow2_rb_put (b, s->h.refcount_order, cluster & ((1ull << bb) - 1), value);
  return 0;
}

/* count entries of the in-memory table from first, big-endian, in one
 * write at the table's place + first. */
static int
write_table_range (struct qcow2_state *s, uint64_t first, uint64_t count)
{
  uint64_t *buf, i;
  int r;

  buf = malloc (count * sizeof *buf);
  if (buf == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < count; i++)
    put_be64 (&buf[i], s->reftable[first + i]);
  r = qcow2_write (s, buf, count * sizeof *buf, s->rt_off + first * 8);
  free (buf);
  return r;
}

/* The moved table, then the header pointing at it; the old table is
 * freed once that is durable (at the next flush). */
static int
commit_move (struct qcow2_state *s)
{
  uint64_t old_off = s->h.refcount_table_offset;
  uint32_t old_clusters = s->h.refcount_table_clusters;
  int r;

  r = write_table_range (s, 0, s->reftable_entries);
  if (r == 0)
    r = qcow2_barrier (s);
  if (r < 0)
    return r;
  s->h.refcount_table_offset = s->rt_off;
  s->h.refcount_table_clusters = s->rt_clusters;
  r = qcow2_write_header_fields (s);
  if (r < 0)
    {
      s->h.refcount_table_offset = old_off;
      s->h.refcount_table_clusters = old_clusters;
      return r;
    }
  s->rt_dirty_lo = s->rt_dirty_hi = 0;
  return qcow2_free_later (s, old_off >> s->h.cluster_bits, old_clusters);
}

int
qcow2_refcount_writeback (struct qcow2_state *s)
{
  int r;

  if (!s->rb_ready)
    return 0;
  /* Queued data first, though no rule needs it: a process killed between
   * the two then leaves its new clusters inside the file, where leaks are
   * seen and repaired, rather than counted past its end. */
  if ((s->rb.nb_dirty || s->rt_dirty_hi > s->rt_dirty_lo)
      && (r = qcow2_drain_data (s)) < 0)
    return r;
  if (s->rb.nb_dirty)
    {
      r = rb_evict_dirty (s);
      if (r < 0)
        return r;
    }
  if (s->rt_off != s->h.refcount_table_offset)
    {
      /* The blocks the table points to first. */
      r = qcow2_barrier (s);
      return r < 0 ? r : commit_move (s);
    }
  if (s->rt_dirty_hi > s->rt_dirty_lo)
    {
      r = qcow2_barrier (s);
      if (r == 0)
        r = write_table_range (s, s->rt_dirty_lo,
                               s->rt_dirty_hi - s->rt_dirty_lo);
      if (r < 0)
        return r;
      s->rt_dirty_lo = s->rt_dirty_hi = 0;
    }
  return 0;
}

/*
 * qemu treats an image as metadata-preallocated when clearly more clusters
 * are in use (refcount > 0) than the file has allocated on the host; data
 * clusters may then be holes that read as zero, and only then does qemu
 * ask the host file about them. Same threshold as qemu: at least
 * MAX(allocated * 10 / 9, allocated + 2) clusters in use.
 */
int
qcow2_metadata_preallocated (struct qcow2_state *s, bool *yes)
{
  uint64_t alloc, real, threshold, end, i, rc, used = 0;
  int r;

  if (s->prealloc_checked)
    {
      *yes = s->metadata_prealloc;
      return 0;
    }
  *yes = false;
  if (s->io->ops->allocated == NULL)
    goto done;
  r = s->io->ops->allocated (s->io, &alloc);
  if (r < 0)
    return r;
  real = alloc >> s->h.cluster_bits;
  threshold = MAX (real * 10 / 9, real + 2);     /* real < 2^55 */
  end = DIV_ROUND_UP (s->file_size, s->cluster_size);
  /* No more clusters can be in use than the file holds: most images
   * (written as they grew) are answered without reading a refcount. */
  if (end < threshold)
    goto done;
  for (i = 0; i < end && used < threshold; i++)
    {
      r = qcow2_get_refcount (s, i, &rc);
      if (r < 0)
        return r;
      used += rc != 0;
    }
  s->metadata_prealloc = used >= threshold;
 done:
  s->prealloc_checked = true;
  *yes = s->metadata_prealloc;
  return 0;
}

void
qcow2_free_refcounts (struct qcow2_state *s)
{
  free (s->reftable);
  s->reftable = NULL;
  s->reftable_entries = 0;
  if (s->rb_ready)
    qcow2_l2_cache_free (&s->rb);
  s->rb_ready = false;
}
