/* qcow2 driver internals: on-disk layout, decoded header, driver state, helpers. */
#ifndef QC_QCOW2_H
#define QC_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "io.h"

/* Open for inspection only: encrypted images and images with an external
 * data file open so describe() works; status() and read() refuse them. */
#ifndef FMT_OPEN_DESCRIBE
#define FMT_OPEN_DESCRIBE (1u << 1)
#endif

/* ---- On-disk constants ------------------------------------------------ */

#define QCOW2_MAGIC 0x514649fbu          /* "QFI\xfb" */

#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_MIN 104u
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u       /* QEMU's implementation limit */
#define QCOW2_EXTL2_MIN_CLUSTER_BITS 14u
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_REFCOUNT_ORDER 6u
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW2_MAX_SNAPSHOT_TABLE (64u << 20)
#define QCOW2_MAX_BITMAPS 65535u
#define QCOW2_MAX_BITMAP_DIR (64u << 20)
#define QCOW2_MAX_BACKING_FORMAT 15u

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full
/* Compatible and autoclear feature bits. */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW    (1ull << 1)

#define QCOW2_CRYPT_NONE 0u
#define QCOW2_CRYPT_AES  1u
#define QCOW2_CRYPT_LUKS 2u

#define QCOW2_COMPRESS_ZLIB 0u
#define QCOW2_COMPRESS_ZSTD 1u

/* Header extension types. */
#define QCOW2_EXT_END            0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE  0x6803f857u
#define QCOW2_EXT_BITMAPS        0x23852875u
#define QCOW2_EXT_CRYPTO         0x0537be77u
#define QCOW2_EXT_DATA_FILE      0x44415441u

#define QCOW2_FEATURE_ENTRY_LEN 48u
#define QCOW2_FEATURE_NAME_LEN  46u
#define QCOW2_BITMAPS_EXT_LEN   24u
#define QCOW2_CRYPTO_EXT_LEN    16u
#define QCOW2_SNAPSHOT_FIXED_LEN 40u

/* L1 and L2 entries. */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull   /* bits 9-55 */
#define QCOW2_SUBCLUSTERS      32u
#define QCOW2_COMPRESSED_SECTOR 512u

/*
 * The header as it lies on disk: every field big-endian, read it with
 * get_be16/32/64 from byte-order.h. Fields from incompatible_features on
 * exist only in version 3 and only up to header_length.
 */
struct qcow2_header_be {
  uint32_t magic;
  uint32_t version;
  uint64_t backing_file_offset;
  uint32_t backing_file_size;
  uint32_t cluster_bits;
  uint64_t size;
  uint32_t crypt_method;
  uint32_t l1_size;
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  /* version 3 */
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  uint32_t refcount_order;
  uint32_t header_length;
  uint8_t compression_type;
  uint8_t padding[7];
} __attribute__ ((packed));

/* The header in host order. A version 2 header reads with every version 3
 * field as if absent: no features, refcount_order 4, header_length 72. */
struct qcow2_header {
  uint32_t magic;
  uint32_t version;
  uint64_t backing_file_offset;
  uint32_t backing_file_size;
  uint32_t cluster_bits;
  uint64_t size;
  uint32_t crypt_method;
  uint32_t l1_size;
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  uint32_t refcount_order;
  uint32_t header_length;
  uint8_t compression_type;
};

/* Decode the first len bytes of an image (len >= 72). */
void qcow2_header_decode (const void *buf, size_t len, struct qcow2_header *h);
/* Encode h into buf: 72 bytes for version 2, else 104 to 112 as
 * header_length says (bytes up to header_length past 112 are left alone).
 * Returns bytes written. */
size_t qcow2_header_encode (const struct qcow2_header *h, void *buf);

/* ---- Parsed metadata -------------------------------------------------- */

struct qcow2_feature {
  uint8_t type;                  /* 0 incompatible, 1 compatible, 2 autoclear */
  uint8_t bit;
  char name[QCOW2_FEATURE_NAME_LEN + 1];
};

/* A header extension this driver does not interpret, kept verbatim so a
 * header rewrite can carry it over. */
struct qcow2_ext {
  uint32_t type;
  uint32_t len;
  unsigned char *data;
};

struct qcow2_snapshot {
  uint64_t l1_table_offset;
  uint32_t l1_size;
  char *id;                      /* NUL-terminated copies */
  char *name;
  uint32_t date_sec;
  uint32_t date_nsec;
  uint64_t vm_clock_nsec;
  uint64_t vm_state_size;        /* the 64-bit field when present */
  uint64_t disk_size;            /* UINT64_MAX when absent */
  uint64_t icount;               /* UINT64_MAX when absent */
  uint32_t extra_data_size;
  unsigned char *extra_data;     /* verbatim, for a rewrite */
};

/* One entry of the persistent bitmap directory. */
struct qcow2_bitmap {
  uint64_t table_offset;
  uint32_t table_size;
  uint32_t flags;                /* on disk: in_use, auto, extra_data_compat */
  uint8_t type;
  uint8_t granularity_bits;
  char *name;                    /* NUL-terminated copy */
};

/* What decoding an entry needs to know about its image. */
struct qcow2_geom {
  const char *name;              /* image name for messages */
  uint32_t version;
  uint32_t cluster_bits;
  bool extended_l2;
  uint64_t file_size;
};

/* One (sub)cluster as an L2 entry describes it. has_offset is set for
 * DATA, for ZERO with a preallocated cluster, and for an UNALLOC
 * subcluster of an allocated cluster (extended L2), as qemu reports. */
struct qcow2_map {
  enum ext_type type;
  bool has_offset;
  uint64_t host_off;             /* DATA/ZERO: host offset of the first byte */
  uint64_t comp_off;             /* COMPRESSED: first byte of compressed data */
  uint64_t comp_len;             /* COMPRESSED: bytes to read, clipped to EOF */
};

/* A bounded LRU cache of L2 tables, kept in their on-disk byte order. */
struct qcow2_l2_slot {
  uint64_t off;                  /* host offset of the table; 0 = empty */
  uint64_t last_use;
  unsigned char *data;
};

struct qcow2_l2_cache {
  struct qcow2_l2_slot *slots;
  unsigned nb_slots;
  uint32_t table_size;
  uint64_t clock;
  unsigned last_hit;
  uint64_t nb_reads;             /* tables read from the file, for tests */
};

#define QCOW2_L2_CACHE_BYTES (32u << 20)
#define QCOW2_L2_CACHE_MAX_SLOTS 1024u
#define QCOW2_L2_CACHE_MIN_SLOTS 4u

struct qcow2_state {
  struct io *io;
  const char *name;
  unsigned flags;                /* FMT_OPEN_* */
  struct qcow2_header h;
  struct qcow2_geom g;
  uint64_t file_size;
  uint32_t cluster_size;
  unsigned l2_bits;              /* log2 of entries per L2 table */
  unsigned l2_entry_size;        /* 8, or 16 with extended L2 entries */
  unsigned sc_bits;              /* log2 of the allocation unit (subcluster) */
  uint64_t *l1;                  /* host order, h.l1_size entries */

  char *backing_file;            /* NULL when none */
  char *backing_format;
  char *data_file;
  struct qcow2_feature *features;
  size_t nb_features;
  struct qcow2_ext *unknown_exts;
  size_t nb_unknown_exts;
  bool has_bitmaps_ext;
  uint32_t nb_bitmaps;           /* 0 unless the bitmaps are consistent */
  uint64_t bitmap_dir_size;
  uint64_t bitmap_dir_offset;
  struct qcow2_bitmap *bitmaps;  /* nb_bitmaps entries, read on first use */
  bool has_crypto_ext;
  uint64_t crypto_hdr_offset;
  uint64_t crypto_hdr_len;
  struct qcow2_snapshot *snapshots;   /* h.nb_snapshots entries */

  /* Refcounts, read only on demand (reading data never needs them). */
  uint64_t *reftable;            /* host order, reftable_entries entries */
  uint64_t reftable_entries;
  unsigned char *refblock;       /* the last refcount block read */
  uint64_t refblock_off;
  bool prealloc_checked;
  bool metadata_prealloc;

  /* Why status()/read() refuse (a describe-only open), or NULL. */
  const char *unreadable;

  struct qcow2_l2_cache l2;
  /* One decompressed cluster, keyed by where its compressed data lies. */
  unsigned char *cbuf;           /* compressed input, up to 2 clusters */
  unsigned char *dbuf;           /* cluster_size bytes */
  bool dcache_valid;
  uint64_t dcache_off;
  uint64_t dcache_len;
  void *zstd_dctx;
};

/* header.c: read, validate and parse the header and its extensions into s
 * (s->io, s->name, s->flags and s->file_size set by the caller). */
int qcow2_parse_header (struct qcow2_state *s);
/* Name incompatible feature bit `bit` from the feature name table, or NULL. */
const char *qcow2_feature_name (const struct qcow2_state *s, unsigned type,
                                unsigned bit);
void qcow2_free_header (struct qcow2_state *s);

/* l2.c: entry decoding; each returns 0 or -errno after naming the image. */
/* L1 entry -> L2 table offset (0 = no table); checks alignment and EOF. */
int qcow2_l1_decode (const struct qcow2_geom *g, uint64_t l1_index,
                     uint64_t entry, uint64_t *l2_off);
/* Split a compressed cluster descriptor into host offset and the number of
 * additional 512-byte sectors. No validation. */
void qcow2_compressed_split (uint32_t cluster_bits, uint64_t entry,
                             uint64_t *host_off, uint64_t *nb_sectors);
/* Classify subcluster sc (0 without extended L2) of an L2 entry; bitmap is
 * the second word of an extended entry. guest_off is for messages only. */
int qcow2_l2_classify (const struct qcow2_geom *g, uint64_t guest_off,
                       uint64_t entry, uint64_t bitmap, unsigned sc,
                       struct qcow2_map *m);

/* l2-cache.c */
int qcow2_l2_cache_init (struct qcow2_l2_cache *c, uint32_t table_size);
void qcow2_l2_cache_free (struct qcow2_l2_cache *c);
/* The table at host offset off (already validated), read on a miss. */
int qcow2_l2_cache_get (struct qcow2_l2_cache *c, struct io *io, uint64_t off,
                        const unsigned char **table);
/* Forget a table (for a writer that changed it on disk). */
void qcow2_l2_cache_drop (struct qcow2_l2_cache *c, uint64_t off);

/* compress.c: decompress src into exactly dst_len bytes, or fail with EIO. */
int qcow2_decompress_zlib (const char *name, void *dst, size_t dst_len,
                           const void *src, size_t src_len);
/* *dctx caches a zstd context between calls; free it with qcow2_zstd_free. */
int qcow2_decompress_zstd (const char *name, void **dctx, void *dst,
                           size_t dst_len, const void *src, size_t src_len);
void qcow2_zstd_free (void *dctx);

/* snapshot.c */
int qcow2_read_snapshots (struct qcow2_state *s);
void qcow2_free_snapshots (struct qcow2_state *s);
int qcow2_snapshot_op (void *st, uint32_t index, struct qc_snapshot_info *out);

/* bitmap.c: the directory is read on the first bitmap() call. */
void qcow2_free_bitmaps (struct qcow2_state *s);
int qcow2_bitmap_op (void *st, uint32_t index, struct qc_bitmap_info *out);

/* refcount.c: the refcount of host cluster `cluster` (0 past the table). */
int qcow2_get_refcount (struct qcow2_state *s, uint64_t cluster,
                        uint64_t *rc);
/* qemu's heuristic: more clusters in use than the host file allocates
 * means metadata preallocation, where DATA clusters may be host holes
 * that read as zero (qemu's BDRV_BLOCK_RECURSE). Computed once. */
int qcow2_metadata_preallocated (struct qcow2_state *s, bool *yes);
void qcow2_free_refcounts (struct qcow2_state *s);

/* qcow2.c: the mapping of guest offset off, one (sub)cluster or, where no
 * L2 table exists, the rest of the L1 entry's range; *unit_len is the
 * length from off to the end of that unit. */
int qcow2_map_at (struct qcow2_state *s, uint64_t off, struct qcow2_map *m,
                  uint64_t *unit_len);

#endif
