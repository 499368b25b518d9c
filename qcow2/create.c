/* qcow2 create: a new empty image (header, extensions, refcounts, L1) as qemu-img create writes it. */
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

#define QCOW2_V3_HEADER_LEN 112u       /* what qemu writes: with padding */
#define SECTOR 512u

/* The names qemu puts in its feature table, in its order. */
static const struct {
  uint8_t type, bit;
  const char *name;
} feature_names[] = {
  { 0, 0, "dirty bit" },
  { 0, 1, "corrupt bit" },
  { 0, 2, "external data file" },
  { 0, 3, "compression type" },
  { 0, 4, "extended L2 entries" },
  { 1, 0, "lazy refcounts" },
  { 2, 0, "bitmaps" },
  { 2, 1, "raw external data" },
};
#define NB_FEATURES (sizeof feature_names / sizeof feature_names[0])

/* Where everything goes, in clusters: header, refcount table, refcount
 * blocks, L1 table. */
struct layout {
  uint32_t version;
  unsigned cluster_bits;
  uint32_t cluster_size;
  unsigned refcount_order;
  unsigned l2_bits;
  uint64_t size;                 /* rounded up to 512 as qemu does */
  uint64_t l1_size;              /* entries */
  uint64_t l1_clusters;
  uint64_t rt_clusters;
  uint64_t rb_count;
  uint64_t total_clusters;
};

static unsigned
log2_u32 (uint32_t v)
{
  return 31u - (unsigned) __builtin_clz (v);
}

static bool
is_pow2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

static int
check_params (const char *name, const struct create_params *p,
              struct layout *lo)
{
  uint32_t version = p->version ? p->version : 3;
  uint32_t cs = p->cluster_size ? p->cluster_size : 65536;
  uint32_t rb = p->refcount_bits ? p->refcount_bits : 16;

  if (version != 2 && version != 3)
    return set_image_error (name, EINVAL, "unsupported qcow2 version %" PRIu32
                            " (compat must be 0.10 or 1.1)", version);
  if (!is_pow2 (cs) || cs < (1u << QCOW2_MIN_CLUSTER_BITS)
      || cs > (1u << QCOW2_MAX_CLUSTER_BITS))
    return set_image_error (name, EINVAL, "cluster size %" PRIu32 " must be "
                            "a power of two between 512 and 2 MiB", cs);
  if (!is_pow2 (rb) || rb > 64)
    return set_image_error (name, EINVAL, "refcount_bits %" PRIu32 " must be "
                            "a power of two between 1 and 64", rb);
  if (version == 2 && rb != 16)
    return set_image_error (name, EINVAL, "refcount_bits other than 16 need "
                            "compat=1.1 (qcow2 version 3)");
  if (version == 2 && p->extended_l2)
    return set_image_error (name, EINVAL, "extended L2 entries need "
                            "compat=1.1 (qcow2 version 3)");
  if (version == 2 && p->lazy_refcounts)
    return set_image_error (name, EINVAL, "lazy refcounts need compat=1.1 "
                            "(qcow2 version 3)");
  if (version == 2 && p->zstd)
    return set_image_error (name, EINVAL, "compression_type=zstd needs "
                            "compat=1.1 (qcow2 version 3)");
  if (p->extended_l2 && cs < (1u << QCOW2_EXTL2_MIN_CLUSTER_BITS))
    return set_image_error (name, EINVAL, "extended L2 entries need a "
                            "cluster size of at least 16384 bytes, not %"
                            PRIu32, cs);
  memset (lo, 0, sizeof *lo);
  lo->version = version;
  lo->cluster_bits = log2_u32 (cs);
  lo->cluster_size = cs;
  lo->refcount_order = log2_u32 (rb);
  lo->l2_bits = lo->cluster_bits - (p->extended_l2 ? 4 : 3);
  return 0;
}

/* L1 entries for the virtual size, within qemu's 32 MiB table limit. */
static int
size_l1 (const char *name, uint64_t size, struct layout *lo)
{
  unsigned shift = lo->cluster_bits + lo->l2_bits;   /* bytes per L1 entry */
  uint64_t max_entries = QCOW2_MAX_L1_BYTES / 8;

  if (size > UINT64_MAX - (SECTOR - 1))
    goto too_big;
  lo->size = ROUND_UP (size, (uint64_t) SECTOR);
  lo->l1_size = (lo->size >> shift)
    + ((lo->size & ((1ull << shift) - 1)) != 0);
  if (lo->l1_size > max_entries)
    goto too_big;
  lo->l1_clusters = DIV_ROUND_UP (lo->l1_size * 8, (uint64_t) lo->cluster_size);
  return 0;
 too_big:
  return set_image_error (name, EFBIG, "virtual size %" PRIu64 " is too "
                          "large for a qcow2 image with %" PRIu32 "-byte "
                          "clusters (the L1 table would exceed 32 MiB; use "
                          "a larger cluster size)", size, lo->cluster_size);
}

/* Refcount blocks must cover themselves and the table: iterate to the
 * fixed point (it grows monotonically and converges in a few steps). */
static void
size_refcounts (struct layout *lo)
{
  uint64_t per_block = (uint64_t) lo->cluster_size * 8 >> lo->refcount_order;
  uint64_t per_rt_cluster = lo->cluster_size / 8;
  uint64_t rt = 1, rb = 1, total;

  for (;;)
    {
      uint64_t nrb, nrt;

      total = 1 + rt + rb + lo->l1_clusters;
      nrb = DIV_ROUND_UP (total, per_block);
      nrt = DIV_ROUND_UP (nrb, per_rt_cluster);
      if (nrb <= rb && nrt <= rt)
        break;
      rb = MAX (rb, nrb);
      rt = MAX (rt, nrt);
    }
  lo->rt_clusters = rt;
  lo->rb_count = rb;
  lo->total_clusters = total;
}

static size_t
put_ext (unsigned char *buf, uint32_t type, const void *data, uint32_t len)
{
  put_be32 (buf, type);
  put_be32 (buf + 4, len);
  memcpy (buf + 8, data, len);
  return 8 + ROUND_UP ((size_t) len, 8);
}

static size_t
put_feature_table (unsigned char *buf)
{
  unsigned char t[NB_FEATURES * QCOW2_FEATURE_ENTRY_LEN];
  size_t i;

  memset (t, 0, sizeof t);
  for (i = 0; i < NB_FEATURES; i++)
    {
      unsigned char *e = t + i * QCOW2_FEATURE_ENTRY_LEN;

      e[0] = feature_names[i].type;
      e[1] = feature_names[i].bit;
      memcpy (e + 2, feature_names[i].name, strlen (feature_names[i].name));
    }
  return put_ext (buf, QCOW2_EXT_FEATURE_TABLE, t, sizeof t);
}

static int
check_names (const char *name, const struct create_params *p)
{
  const char *f = p->backing_format;
  size_t i;

  if (p->backing && strlen (p->backing) > QCOW2_MAX_BACKING_NAME)
    return set_image_error (name, EINVAL, "backing file name is %zu bytes "
                            "long; qcow2 allows at most 1023",
                            strlen (p->backing));
  if (f == NULL)
    return 0;
  if (p->backing == NULL)
    return set_image_error (name, EINVAL, "a backing format (%s) needs a "
                            "backing file", f);
  if (*f == '\0' || strlen (f) > QCOW2_MAX_BACKING_FORMAT)
    return set_image_error (name, EINVAL, "backing format '%s' must be 1 to "
                            "15 bytes long", f);
  for (i = 0; f[i]; i++)
    if ((unsigned char) f[i] < 0x21 || (unsigned char) f[i] > 0x7e)
      return set_image_error (name, EINVAL, "backing format '%s' holds a "
                              "character that is not printable", f);
  return 0;
}

/* Cluster 0: header, extensions, end marker, backing name. */
static int
build_header (const char *name, const struct create_params *p,
              const struct layout *lo, unsigned char *c0)
{
  struct qcow2_header h;
  size_t off, blen = p->backing ? strlen (p->backing) : 0;
  unsigned char end[8] = { 0 };

  memset (&h, 0, sizeof h);
  h.magic = QCOW2_MAGIC;
  h.version = lo->version;
  h.cluster_bits = lo->cluster_bits;
  h.size = lo->size;
  h.l1_size = (uint32_t) lo->l1_size;
  h.l1_table_offset = lo->l1_size == 0 ? 0
    : (1 + lo->rt_clusters + lo->rb_count) << lo->cluster_bits;
  h.refcount_table_offset = (uint64_t) lo->cluster_size;
  h.refcount_table_clusters = (uint32_t) lo->rt_clusters;
  h.refcount_order = lo->refcount_order;
  h.header_length = lo->version >= 3 ? QCOW2_V3_HEADER_LEN
    : QCOW2_V2_HEADER_LEN;
  if (p->extended_l2)
    h.incompatible_features |= QCOW2_INCOMPAT_EXTL2;
  if (p->zstd)
    {
      h.incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
      h.compression_type = QCOW2_COMPRESS_ZSTD;
    }
  if (p->lazy_refcounts)
    h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;

  off = h.header_length;
  if (p->backing_format)
    off += put_ext (c0 + off, QCOW2_EXT_BACKING_FORMAT, p->backing_format,
                    (uint32_t) strlen (p->backing_format));
  /* qemu leaves the table out for clusters of 4 KiB and less, where it
   * would crowd out the backing name. */
  if (lo->version >= 3 && lo->cluster_size > 4096)
    off += put_feature_table (c0 + off);
  memcpy (c0 + off, end, sizeof end);
  off += sizeof end;
  if (p->backing)
    {
      if (blen > lo->cluster_size - off)
        return set_image_error (name, ENOSPC, "backing file name (%zu "
                                "bytes) does not fit in the %" PRIu32
                                "-byte header cluster", blen,
                                lo->cluster_size);
      memcpy (c0 + off, p->backing, blen);
      h.backing_file_offset = off;
      h.backing_file_size = (uint32_t) blen;
    }
  qcow2_header_encode (&h, c0);
  return 0;
}

static void
set_refcount_one (unsigned char *blocks, unsigned order, uint64_t i)
{
  switch (order)
    {
    case 6: put_be64 (blocks + 8 * i, 1); break;
    case 5: put_be32 (blocks + 4 * i, 1); break;
    case 4: put_be16 (blocks + 2 * i, 1); break;
    case 3: blocks[i] = 1; break;
    default:
      /* Sub-byte widths: bit 0 is the least significant bit. */
      blocks[(i << order) / 8] |= (unsigned char) (1u << ((i << order) % 8));
      break;
    }
}

/* The refcount table and blocks, contiguous after the header: every
 * metadata cluster [0, total) has refcount 1. */
static int
write_refcounts (struct io *io, const struct layout *lo)
{
  uint64_t cs = lo->cluster_size, i;
  uint64_t rb_start = 1 + lo->rt_clusters;
  size_t rt_bytes = (size_t) (lo->rt_clusters * cs);
  size_t rb_bytes = (size_t) (lo->rb_count * cs);
  unsigned char *rt, *rb;
  int r;

  rt = calloc (1, rt_bytes);
  rb = calloc (1, rb_bytes);
  if (rt == NULL || rb == NULL)
    {
      free (rt);
      free (rb);
      return set_error (ENOMEM, "out of memory");
    }
  for (i = 0; i < lo->rb_count; i++)
    put_be64 (rt + 8 * i, (rb_start + i) * cs);
  for (i = 0; i < lo->total_clusters; i++)
    set_refcount_one (rb, lo->refcount_order, i);
  r = io_pwrite (io, rt, rt_bytes, cs);
  if (r == 0)
    r = io_pwrite (io, rb, rb_bytes, rb_start * cs);
  free (rt);
  free (rb);
  return r;
}

int
qcow2_create_op (struct io *io, const struct create_params *p)
{
  const char *name = io->name;
  struct layout lo;
  unsigned char *c0;
  uint64_t cur, end;
  int r;

  if (!io->writable)
    return set_image_error (name, EBADF, "cannot create an image on a "
                            "read-only file");
  r = check_params (name, p, &lo);
  if (r == 0)
    r = check_names (name, p);
  if (r == 0)
    r = size_l1 (name, p->size, &lo);
  if (r == 0)
    r = io_get_size (io, &cur);
  if (r < 0)
    return r;
  if (cur != 0)
    return set_image_error (name, EEXIST, "is not empty (%" PRIu64
                            " bytes); qcow2 create needs an empty file", cur);
  size_refcounts (&lo);

  c0 = calloc (1, lo.cluster_size);
  if (c0 == NULL)
    return set_error (ENOMEM, "out of memory");
  r = build_header (name, p, &lo, c0);
  /* Refcounts before the header: a half-written image is not qcow2. */
  if (r == 0)
    r = write_refcounts (io, &lo);
  if (r == 0)
    r = io_pwrite (io, c0, lo.cluster_size, 0);
  free (c0);
  if (r < 0)
    return r;
  /* The L1 table reads as zeroes; like qemu, the file ends right after
   * it (or after the refcount blocks when there is none). */
  end = (1 + lo.rt_clusters + lo.rb_count) << lo.cluster_bits;
  end += lo.l1_size * 8;
  return io->ops->truncate (io, end);
}
