/* qcow2 header: decode, validate every field against the file, parse header extensions. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

static_assert (offsetof (struct qcow2_header_be, incompatible_features) == 72,
               "v2 header is 72 bytes");
static_assert (offsetof (struct qcow2_header_be, compression_type) == 104,
               "compression_type at 104");
static_assert (sizeof (struct qcow2_header_be) == 112, "padded to 112");

void
qcow2_header_decode (const void *buf, size_t len, struct qcow2_header *h)
{
  const struct qcow2_header_be *d = buf;

  assert (len >= QCOW2_V2_HEADER_LEN);
  memset (h, 0, sizeof *h);
  h->magic = get_be32 (&d->magic);
  h->version = get_be32 (&d->version);
  h->backing_file_offset = get_be64 (&d->backing_file_offset);
  h->backing_file_size = get_be32 (&d->backing_file_size);
  h->cluster_bits = get_be32 (&d->cluster_bits);
  h->size = get_be64 (&d->size);
  h->crypt_method = get_be32 (&d->crypt_method);
  h->l1_size = get_be32 (&d->l1_size);
  h->l1_table_offset = get_be64 (&d->l1_table_offset);
  h->refcount_table_offset = get_be64 (&d->refcount_table_offset);
  h->refcount_table_clusters = get_be32 (&d->refcount_table_clusters);
  h->nb_snapshots = get_be32 (&d->nb_snapshots);
  h->snapshots_offset = get_be64 (&d->snapshots_offset);

  /* Version 2 has no room for these: bytes 72.. hold header extensions. */
  h->refcount_order = 4;
  h->header_length = QCOW2_V2_HEADER_LEN;
  if (h->version < 3 || len < QCOW2_V3_HEADER_MIN)
    return;
  h->incompatible_features = get_be64 (&d->incompatible_features);
  h->compatible_features = get_be64 (&d->compatible_features);
  h->autoclear_features = get_be64 (&d->autoclear_features);
  h->refcount_order = get_be32 (&d->refcount_order);
  h->header_length = get_be32 (&d->header_length);
  if (h->header_length > QCOW2_V3_HEADER_MIN && len > QCOW2_V3_HEADER_MIN)
    h->compression_type = d->compression_type;
}

size_t
qcow2_header_encode (const struct qcow2_header *h, void *buf)
{
  struct qcow2_header_be d;
  size_t n;

  memset (&d, 0, sizeof d);
  put_be32 (&d.magic, h->magic);
  put_be32 (&d.version, h->version);
  put_be64 (&d.backing_file_offset, h->backing_file_offset);
  put_be32 (&d.backing_file_size, h->backing_file_size);
  put_be32 (&d.cluster_bits, h->cluster_bits);
  put_be64 (&d.size, h->size);
  put_be32 (&d.crypt_method, h->crypt_method);
  put_be32 (&d.l1_size, h->l1_size);
  put_be64 (&d.l1_table_offset, h->l1_table_offset);
  put_be64 (&d.refcount_table_offset, h->refcount_table_offset);
  put_be32 (&d.refcount_table_clusters, h->refcount_table_clusters);
  put_be32 (&d.nb_snapshots, h->nb_snapshots);
  put_be64 (&d.snapshots_offset, h->snapshots_offset);
  if (h->version < 3)
    {
      memcpy (buf, &d, QCOW2_V2_HEADER_LEN);
      return QCOW2_V2_HEADER_LEN;
    }
  put_be64 (&d.incompatible_features, h->incompatible_features);
  put_be64 (&d.compatible_features, h->compatible_features);
  put_be64 (&d.autoclear_features, h->autoclear_features);
  put_be32 (&d.refcount_order, h->refcount_order);
  put_be32 (&d.header_length, h->header_length);
  d.compression_type = h->compression_type;
  /* The fields up to header_length are always there in version 3. */
  n = MAX ((size_t) QCOW2_V3_HEADER_MIN,
           MIN ((size_t) h->header_length, sizeof d));
  memcpy (buf, &d, n);
  return n;
}

const char *
qcow2_feature_name (const struct qcow2_state *s, unsigned type, unsigned bit)
{
  size_t i;

  for (i = 0; i < s->nb_features; i++)
    if (s->features[i].type == type && s->features[i].bit == bit
        && s->features[i].name[0])
      return s->features[i].name;
  return NULL;
}

/* A NUL-terminated copy of an on-disk string that must not contain NUL. */
static int
copy_string (struct qcow2_state *s, const unsigned char *p, size_t len,
             const char *what, char **out)
{
  char *str;

  if (memchr (p, 0, len) != NULL)
    return set_image_error (s->name, EINVAL, "%s contains a NUL byte", what);
  str = malloc (len + 1);
  if (str == NULL)
    return set_error (ENOMEM, "out of memory");
  memcpy (str, p, len);
  str[len] = '\0';
  *out = str;
  return 0;
}

/* magic, version, cluster_bits, header_length: everything needed to know
 * how much of cluster 0 is header. */
static int
check_basic (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;

  if (h->magic != QCOW2_MAGIC)
    return set_image_error (s->name, EINVAL,
                            "not a qcow2 image (bad magic 0x%08" PRIx32 ")",
                            h->magic);
  if (h->version != 2 && h->version != 3)
    return set_image_error (s->name, ENOTSUP,
                            "unsupported qcow2 version %" PRIu32
                            " (only 2 and 3 are known)", h->version);
  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS
      || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return set_image_error (s->name, EINVAL,
                            "invalid cluster_bits %" PRIu32
                            " (must be 9 to 21)", h->cluster_bits);
  if (h->version == 2)
    return 0;
  if (h->header_length < QCOW2_V3_HEADER_MIN)
    return set_image_error (s->name, EINVAL,
                            "header_length %" PRIu32
                            " is less than 104", h->header_length);
  if (!IS_ALIGNED (h->header_length, 8))
    return set_image_error (s->name, EINVAL,
                            "header_length %" PRIu32
                            " is not a multiple of 8", h->header_length);
  if (h->header_length > (1u << h->cluster_bits))
    return set_image_error (s->name, EINVAL,
                            "header_length %" PRIu32
                            " exceeds the cluster size %u",
                            h->header_length, 1u << h->cluster_bits);
  if (h->refcount_order > QCOW2_MAX_REFCOUNT_ORDER)
    return set_image_error (s->name, EINVAL,
                            "invalid refcount_order %" PRIu32
                            " (must be at most 6)", h->refcount_order);
  return 0;
}

/* The backing name lies in cluster 0, after the header. */
static int
read_backing_name (struct qcow2_state *s, const unsigned char *c0)
{
  const struct qcow2_header *h = &s->h;

  if (h->backing_file_offset == 0)
    return 0;
  if (h->backing_file_size > QCOW2_MAX_BACKING_NAME)
    return set_image_error (s->name, EINVAL,
                            "backing_file_size %" PRIu32
                            " exceeds 1023 bytes", h->backing_file_size);
  if (h->backing_file_offset < h->header_length
      || !range_within (h->backing_file_offset, h->backing_file_size,
                        s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "backing_file_offset 0x%" PRIx64
                            " (size %" PRIu32 ") is not inside the header "
                            "cluster after the header",
                            h->backing_file_offset, h->backing_file_size);
  if (h->backing_file_size == 0)
    return 0;
  return copy_string (s, c0 + h->backing_file_offset, h->backing_file_size,
                      "backing file name", &s->backing_file);
}

static int
ext_backing_format (struct qcow2_state *s, const unsigned char *p,
                    uint32_t len)
{
  uint32_t i;

  if (len > QCOW2_MAX_BACKING_FORMAT)
    return set_image_error (s->name, EINVAL,
                            "backing format header extension is %" PRIu32
                            " bytes (at most 15)", len);
  for (i = 0; i < len; i++)
    if (p[i] < 0x20 || p[i] > 0x7e)
      return set_image_error (s->name, EINVAL,
                              "backing format header extension holds a "
                              "non-printable byte 0x%02x", p[i]);
  if (len == 0)                  /* same as no extension */
    return 0;
  return copy_string (s, p, len, "backing format", &s->backing_format);
}

static int
ext_feature_table (struct qcow2_state *s, const unsigned char *p,
                   uint32_t len)
{
  size_t i, j, n = len / QCOW2_FEATURE_ENTRY_LEN;

  if (n == 0)
    return 0;
  s->features = calloc (n, sizeof *s->features);
  if (s->features == NULL)
    return set_error (ENOMEM, "out of memory");
  s->nb_features = n;
  for (i = 0; i < n; i++, p += QCOW2_FEATURE_ENTRY_LEN)
    {
      struct qcow2_feature *f = &s->features[i];

      f->type = p[0];
      f->bit = p[1];
      memcpy (f->name, p + 2, QCOW2_FEATURE_NAME_LEN);
      /* The names end up in messages on a terminal. */
      for (j = 0; j < QCOW2_FEATURE_NAME_LEN && f->name[j]; j++)
        if ((unsigned char) f->name[j] < 0x20
            || (unsigned char) f->name[j] > 0x7e)
          f->name[j] = '?';
    }
  return 0;
}

static int
ext_bitmaps (struct qcow2_state *s, const unsigned char *p, uint32_t len)
{
  uint32_t nb;
  uint64_t dir_size, dir_off;

  if (len != QCOW2_BITMAPS_EXT_LEN)
    return set_image_error (s->name, EINVAL,
                            "bitmaps header extension is %" PRIu32
                            " bytes, expected 24", len);
  s->has_bitmaps_ext = true;
  /* Without the autoclear bit a program unaware of bitmaps wrote the
   * image: the bitmaps are stale, and nothing here is to be trusted. */
  if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
    return 0;
  nb = get_be32 (p);
  dir_size = get_be64 (p + 8);
  dir_off = get_be64 (p + 16);
  if (nb == 0 || nb > QCOW2_MAX_BITMAPS)
    return set_image_error (s->name, EINVAL,
                            "bitmaps extension: nb_bitmaps %" PRIu32
                            " out of range (1 to 65535)", nb);
  if (get_be32 (p + 4) != 0)
    return set_image_error (s->name, EINVAL,
                            "bitmaps extension: reserved field is not zero");
  if (dir_size > QCOW2_MAX_BITMAP_DIR)
    return set_image_error (s->name, EINVAL,
                            "bitmaps extension: bitmap_directory_size %"
                            PRIu64 " exceeds 64 MiB", dir_size);
  if (!IS_ALIGNED (dir_off, s->cluster_size)
      || !range_within (dir_off, dir_size, s->file_size))
    return set_image_error (s->name, EINVAL,
                            "bitmaps extension: bitmap_directory_offset 0x%"
                            PRIx64 " is misaligned or past end of file",
                            dir_off);
  s->nb_bitmaps = nb;
  s->bitmap_dir_size = dir_size;
  s->bitmap_dir_offset = dir_off;
  return 0;
}

static int
ext_crypto (struct qcow2_state *s, const unsigned char *p, uint32_t len)
{
  uint64_t off, size;

  if (len != QCOW2_CRYPTO_EXT_LEN)
    return set_image_error (s->name, EINVAL,
                            "crypto header extension is %" PRIu32
                            " bytes, expected 16", len);
  if (s->h.crypt_method != QCOW2_CRYPT_LUKS)
    return set_image_error (s->name, EINVAL,
                            "crypto header extension without LUKS "
                            "encryption (crypt_method %" PRIu32 ")",
                            s->h.crypt_method);
  off = get_be64 (p);
  size = get_be64 (p + 8);
  if (!IS_ALIGNED (off, s->cluster_size)
      || !range_within (off, size, s->file_size))
    return set_image_error (s->name, EINVAL,
                            "crypto header at 0x%" PRIx64 " (%" PRIu64
                            " bytes) is misaligned or past end of file",
                            off, size);
  s->has_crypto_ext = true;
  s->crypto_hdr_offset = off;
  s->crypto_hdr_len = size;
  return 0;
}

static int
ext_unknown (struct qcow2_state *s, uint32_t type, const unsigned char *p,
             uint32_t len)
{
  struct qcow2_ext *v, *e;

  v = realloc (s->unknown_exts, (s->nb_unknown_exts + 1) * sizeof *v);
  if (v == NULL)
    return set_error (ENOMEM, "out of memory");
  s->unknown_exts = v;
  e = &v[s->nb_unknown_exts];
  e->type = type;
  e->len = len;
  e->data = malloc (len ? len : 1);
  if (e->data == NULL)
    return set_error (ENOMEM, "out of memory");
  memcpy (e->data, p, len);
  s->nb_unknown_exts++;
  return 0;
}

static int
dispatch_ext (struct qcow2_state *s, uint32_t type, const unsigned char *p,
              uint32_t len, unsigned *seen)
{
  static const uint32_t known[] = {
    QCOW2_EXT_BACKING_FORMAT, QCOW2_EXT_FEATURE_TABLE, QCOW2_EXT_BITMAPS,
    QCOW2_EXT_CRYPTO, QCOW2_EXT_DATA_FILE,
  };
  unsigned i;

  for (i = 0; i < sizeof known / sizeof known[0]; i++)
    if (known[i] == type)
      {
        if (*seen & (1u << i))
          return set_image_error (s->name, EINVAL,
                                  "header extension 0x%08" PRIx32
                                  " appears twice", type);
        *seen |= 1u << i;
      }
  switch (type)
    {
    case QCOW2_EXT_BACKING_FORMAT:
      return ext_backing_format (s, p, len);
    case QCOW2_EXT_FEATURE_TABLE:
      return ext_feature_table (s, p, len);
    case QCOW2_EXT_BITMAPS:
      return ext_bitmaps (s, p, len);
    case QCOW2_EXT_CRYPTO:
      return ext_crypto (s, p, len);
    case QCOW2_EXT_DATA_FILE:
      return copy_string (s, p, len, "external data file name",
                          &s->data_file);
    default:
      return ext_unknown (s, type, p, len);
    }
}

/* Extensions run from the end of the header to the end of cluster 0, or
 * to the backing name, which must come after them. */
static int
parse_extensions (struct qcow2_state *s, const unsigned char *c0)
{
  uint64_t off = s->h.header_length;
  uint64_t end = s->cluster_size;
  unsigned seen = 0;
  int r;

  if (s->h.backing_file_offset != 0 && s->h.backing_file_offset < end)
    end = s->h.backing_file_offset;
  while (off < end)
    {
      uint32_t type, len;

      if (end - off < 8)
        {
          /* Too short for an extension: fine if it is end-marker zeroes. */
          while (off < end)
            if (c0[off++] != 0)
              return set_image_error (s->name, EINVAL,
                                      "truncated header extension at "
                                      "offset 0x%" PRIx64, off - 1);
          break;
        }
      type = get_be32 (c0 + off);
      len = get_be32 (c0 + off + 4);
      if (type == QCOW2_EXT_END)
        break;
      if (len > end - off - 8)
        return set_image_error (s->name, EINVAL,
                                "header extension 0x%08" PRIx32
                                " at offset 0x%" PRIx64 ": length %" PRIu32
                                " runs past the end of the header area",
                                type, off, len);
      r = dispatch_ext (s, type, c0 + off + 8, len, &seen);
      if (r < 0)
        return r;
      off += 8 + ROUND_UP ((uint64_t) len, 8);
    }
  return 0;
}

static int
refuse_unknown_incompat (struct qcow2_state *s, uint64_t bits)
{
  char list[512];
  size_t n = 0;
  unsigned bit;

  list[0] = '\0';
  for (bit = 0; bit < 64 && n < sizeof list; bit++)
    {
      const char *name;
      int w;

      if (!(bits & (1ull << bit)))
        continue;
      name = qcow2_feature_name (s, 0, bit);
      if (name)
        w = snprintf (list + n, sizeof list - n, "%s%s (bit %u)",
                      n ? ", " : "", name, bit);
      else
        w = snprintf (list + n, sizeof list - n, "%sbit %u",
                      n ? ", " : "", bit);
      n += w > 0 ? (size_t) w : 0;
    }
  return set_image_error (s->name, ENOTSUP,
                          "unsupported qcow2 feature(s): %s", list);
}

static int
check_compression (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;
  bool bit = h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;

  if (bit && h->header_length <= QCOW2_V3_HEADER_MIN)
    return set_image_error (s->name, EINVAL,
                            "compression type feature bit is set but the "
                            "header has no compression_type field");
  if (h->compression_type > QCOW2_COMPRESS_ZSTD)
    return set_image_error (s->name, ENOTSUP,
                            "unsupported compression_type %u "
                            "(0 zlib and 1 zstd are known)",
                            h->compression_type);
  if (bit && h->compression_type == QCOW2_COMPRESS_ZLIB)
    return set_image_error (s->name, EINVAL,
                            "compression type feature bit is set but "
                            "compression_type is 0 (zlib)");
  if (!bit && h->compression_type != QCOW2_COMPRESS_ZLIB)
    return set_image_error (s->name, EINVAL,
                            "compression_type %u without the compression "
                            "type feature bit", h->compression_type);
  return 0;
}

/* Encryption and external data files: describable, not readable. */
static int
check_unreadable (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;
  bool refuse = !(s->flags & FMT_OPEN_DESCRIBE) || (s->flags & FMT_OPEN_WRITE);

  if (h->crypt_method > QCOW2_CRYPT_LUKS)
    return set_image_error (s->name, EINVAL,
                            "unknown crypt_method %" PRIu32,
                            h->crypt_method);
  if (h->crypt_method == QCOW2_CRYPT_LUKS && !s->has_crypto_ext)
    return set_image_error (s->name, EINVAL,
                            "LUKS encryption (crypt_method 2) without a "
                            "crypto header extension");
  if (h->crypt_method != QCOW2_CRYPT_NONE)
    {
      if (refuse)
        return set_image_error (s->name, ENOTSUP,
                                "image is encrypted (crypt_method %" PRIu32
                                "); encrypted images are not supported",
                                h->crypt_method);
      s->unreadable = "image is encrypted; encrypted images are not "
        "supported";
    }
  if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
    {
      if (refuse)
        return set_image_error (s->name, ENOTSUP,
                                "image uses an external data file "
                                "(incompatible feature bit 2); external "
                                "data files are not supported");
      s->unreadable = "image uses an external data file; external data "
        "files are not supported";
    }
  return 0;
}

/* Feature bits and what this open may do with them. */
static int
check_features (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;
  uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;
  int r;

  if (unknown)
    return refuse_unknown_incompat (s, unknown);
  r = check_compression (s);
  if (r < 0)
    return r;
  if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2)
      && h->cluster_bits < QCOW2_EXTL2_MIN_CLUSTER_BITS)
    return set_image_error (s->name, EINVAL,
                            "extended L2 entries need cluster_bits >= 14, "
                            "not %" PRIu32, h->cluster_bits);
  /* Dirty only means refcounts may be stale: reading does not use them. */
  if ((h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
      && (s->flags & FMT_OPEN_WRITE) && !(s->flags & FMT_OPEN_REPAIR))
    return set_image_error (s->name, EACCES,
                            "image is marked corrupt (incompatible feature "
                            "bit 1); it can only be opened read-only");
  return check_unreadable (s);
}

/* The L1 table must cover the virtual size and lie in the file. */
static int
check_l1 (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;
  unsigned shift = h->cluster_bits + s->l2_bits;   /* at most 39 */
  uint64_t need;

  need = (h->size >> shift) + ((h->size & ((1ull << shift) - 1)) != 0);
  if ((uint64_t) h->l1_size * 8 > QCOW2_MAX_L1_BYTES)
    return set_image_error (s->name, EINVAL,
                            "l1_size %" PRIu32 " exceeds the 32 MiB L1 "
                            "table limit", h->l1_size);
  if (h->l1_size < need)
    return set_image_error (s->name, EINVAL,
                            "l1_size %" PRIu32 " is too small for the "
                            "virtual size %" PRIu64 " (needs %" PRIu64 ")",
                            h->l1_size, h->size, need);
  if (!IS_ALIGNED (h->l1_table_offset, s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "l1_table_offset 0x%" PRIx64
                            " is not cluster-aligned", h->l1_table_offset);
  /* An empty table (virtual size 0) may point anywhere. */
  if (h->l1_size
      && !range_within (h->l1_table_offset, (uint64_t) h->l1_size * 8,
                        s->file_size))
    return set_image_error (s->name, EINVAL,
                            "l1_table_offset 0x%" PRIx64 ": L1 table of %"
                            PRIu32 " entries runs past end of file",
                            h->l1_table_offset, h->l1_size);
  return 0;
}

/* Reading never uses refcounts, but a table that cannot exist marks an
 * image no writer produced. */
static int
check_refcount_table (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;
  uint64_t bytes = (uint64_t) h->refcount_table_clusters << h->cluster_bits;

  if (!IS_ALIGNED (h->refcount_table_offset, s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "refcount_table_offset 0x%" PRIx64
                            " is not cluster-aligned",
                            h->refcount_table_offset);
  if (h->refcount_table_clusters == 0 || bytes > QCOW2_MAX_REFTABLE_BYTES)
    return set_image_error (s->name, EINVAL,
                            "refcount_table_clusters %" PRIu32
                            " out of range (1 to 8 MiB of table)",
                            h->refcount_table_clusters);
  if (!range_within (h->refcount_table_offset, bytes, s->file_size))
    return set_image_error (s->name, EINVAL,
                            "refcount_table_offset 0x%" PRIx64
                            ": refcount table runs past end of file",
                            h->refcount_table_offset);
  return 0;
}

/* Entries are checked one by one in snapshot.c; here only what the header
 * says: each entry is at least 40 bytes. */
static int
check_snapshot_table (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;

  if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
    return set_image_error (s->name, EINVAL,
                            "nb_snapshots %" PRIu32 " exceeds 65536",
                            h->nb_snapshots);
  if (!IS_ALIGNED (h->snapshots_offset, s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "snapshots_offset 0x%" PRIx64
                            " is not cluster-aligned", h->snapshots_offset);
  if (h->nb_snapshots
      && !range_within (h->snapshots_offset,
                        (uint64_t) h->nb_snapshots * QCOW2_SNAPSHOT_FIXED_LEN,
                        s->file_size))
    return set_image_error (s->name, EINVAL,
                            "snapshots_offset 0x%" PRIx64
                            ": snapshot table runs past end of file",
                            h->snapshots_offset);
  return 0;
}

/* Whether the first `have` bytes of cluster 0 hold everything the
 * parsers below look at: the extensions up to their end marker (or the
 * end of their area) and the backing name. Malformed values answer true
 * when the parsers reject them without reading past what they check. */
static bool
prefix_suffices (const struct qcow2_state *s, const unsigned char *c0,
                 uint64_t have)
{
  const struct qcow2_header *h = &s->h;
  uint64_t off = h->header_length, end = s->cluster_size;

  if (h->backing_file_offset != 0) {
    if (h->backing_file_offset + (uint64_t) h->backing_file_size > have
        && h->backing_file_size <= QCOW2_MAX_BACKING_NAME
        && h->backing_file_offset < s->cluster_size)
      return false;
    if (h->backing_file_offset < end)
      end = h->backing_file_offset;
  }
  while (off < end) {
    uint32_t len;

    if (end - off < 8)
      return end <= have;
    if (off + 8 > have)
      return false;
    if (get_be32 (c0 + off) == QCOW2_EXT_END)
      return true;
    len = get_be32 (c0 + off + 4);
    if (len > end - off - 8)
      return true;                   /* refused from the length alone */
    if (off + 8 + len > have)
      return false;
    off += 8 + ROUND_UP ((uint64_t) len, 8);
  }
  return true;
}

/* Cluster 0's first 4 KiB usually hold the header, its extensions and
 * the backing name; the rest of the cluster is read only when they do
 * not. Reading a whole cluster per layer costs a deep chain's open more
 * than anything else it reads. */
#define HEADER_PREFIX 4096u

static int
read_first_cluster (struct qcow2_state *s, unsigned char **c0)
{
  unsigned char *p;
  size_t n = HEADER_PREFIX;
  int r;

  *c0 = p = malloc (n);
  if (p == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (s->io, p, n, 0);
  if (r < 0)
    return r;
  qcow2_header_decode (p, sizeof (struct qcow2_header_be), &s->h);
  r = check_basic (s);
  if (r < 0)
    return r;
  if (s->file_size < s->h.header_length)
    return set_image_error (s->name, EINVAL,
                            "file is too short (%" PRIu64 " bytes) for a "
                            "qcow2 header", s->file_size);
  s->cluster_size = 1u << s->h.cluster_bits;
  if (s->cluster_size <= n || prefix_suffices (s, p, n))
    return 0;
  /* cluster_bits is validated: at most 2 MiB. */
  free (p);
  *c0 = p = malloc (s->cluster_size);
  if (p == NULL)
    return set_error (ENOMEM, "out of memory");
  return io_pread (s->io, p, s->cluster_size, 0);
}

int
qcow2_parse_header (struct qcow2_state *s)
{
  unsigned char *c0 = NULL;
  int r;

  r = read_first_cluster (s, &c0);
  if (r < 0)
    goto out;
  s->g.name = s->name;
  s->g.version = s->h.version;
  s->g.cluster_bits = s->h.cluster_bits;
  s->g.extended_l2 = s->h.incompatible_features & QCOW2_INCOMPAT_EXTL2;
  s->g.file_size = s->file_size;
  s->l2_entry_size = s->g.extended_l2 ? 16 : 8;
  s->l2_bits = s->h.cluster_bits - (s->g.extended_l2 ? 4 : 3);
  s->sc_bits = s->h.cluster_bits - (s->g.extended_l2 ? 5 : 0);

  r = read_backing_name (s, c0);
  if (r == 0)
    r = parse_extensions (s, c0);
  if (r == 0)
    r = check_features (s);
  if (r == 0)
    r = check_l1 (s);
  if (r == 0)
    r = check_refcount_table (s);
  if (r == 0)
    r = check_snapshot_table (s);
 out:
  free (c0);
  return r;
}

void
qcow2_free_header (struct qcow2_state *s)
{
  size_t i;

  free (s->backing_file);
  free (s->backing_format);
  free (s->data_file);
  free (s->features);
  for (i = 0; i < s->nb_unknown_exts; i++)
    free (s->unknown_exts[i].data);
  free (s->unknown_exts);
  s->backing_file = s->backing_format = s->data_file = NULL;
  s->features = NULL;
  s->unknown_exts = NULL;
  s->nb_features = s->nb_unknown_exts = 0;
}
