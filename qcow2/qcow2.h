/* qcow2 driver internals: on-disk layout, decoded header, driver state, helpers. */
#ifndef QC_QCOW2_H
#define QC_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "byte-order.h"
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
  bool dirty;                    /* changed in memory, not yet written */
};

struct qcow2_l2_cache {
  struct qcow2_l2_slot *slots;
  unsigned nb_slots;             /* slots allocated so far */
  unsigned max_slots;            /* and at most: grown to on misses */
  uint32_t table_size;
  uint64_t clock;
  unsigned last_hit;
  uint64_t nb_reads;             /* tables read from the file, for tests */
  unsigned nb_dirty;
  uint64_t nb_writes;            /* tables written back, for tests */
  /* Called before a dirty table is evicted: must leave every slot clean,
   * writing them in whatever order crash safety needs. NULL: write them. */
  int (*evict_dirty) (void *opaque);
  void *opaque;
};

#define QCOW2_L2_CACHE_BYTES (8u << 20)
#define QCOW2_L2_CACHE_MAX_SLOTS 1024u
#define QCOW2_L2_CACHE_MIN_SLOTS 4u
/* A read-only open caches L2 tables and refcount blocks in slices of at
 * most this many bytes (qemu's default slice too): a 2 MiB-cluster table
 * is 2 MiB, and each layer of a deep chain needs a little of one or two
 * tables, so reading more costs a deep chain's job page cache and memory
 * it never uses. */
#define QCOW2_L2_SLICE (4u << 10)

struct qcow2_state {
  struct io *io;
  const char *name;
  unsigned flags;                /* FMT_OPEN_* */
  struct qcow2_header h;
  struct qcow2_geom g;
  uint64_t file_size;
  uint32_t cluster_size;
  unsigned l2_bits;              /* log2 of entries per L2 table */
  unsigned l2_slice_bits;        /* log2 of entries per cached slice */
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
  unsigned rb_slice_bits;        /* log2 of refcounts per cached slice */
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

  /* ---- write side (FMT_OPEN_WRITE): see alloc.c, flush.c, write.c ---- */
  bool writable;
  struct backing_reader br;      /* br.read NULL: the view below is zeroes */
  struct qcow2_l2_cache rb;      /* refcount blocks, keyed by host offset */
  bool rb_ready;
  uint64_t rt_dirty_lo, rt_dirty_hi;   /* reftable entries not on disk */
  uint64_t rt_off;               /* where the in-memory table goes; differs */
  uint32_t rt_clusters;          /* from the header's while a move waits */
  uint64_t l1_dirty_lo, l1_dirty_hi;   /* L1 entries not on disk */
  bool unsynced;                 /* written since the last fsync */
  const struct data_sink *sink;  /* guest data goes there, or NULL */
  uint64_t free_cursor;          /* allocation scan starts here (cluster) */
  bool append_only;
  struct qcow2_free_range *pending;    /* decrements waiting for flush */
  size_t nb_pending, cap_pending;
  uint64_t comp_next;            /* next byte for compressed data, 0 none */
  unsigned char *wbuf;           /* one cluster: copy-on-write assembly */
  unsigned char *zbuf;           /* one cluster of zeroes */
  unsigned char *l2tmp;          /* one cluster: L2 table being copied */
  unsigned char *cwbuf;          /* one cluster: compressed output */
  void *zstd_cctx;
  struct qcow2_l2_upd *upd;      /* L2 changes of one chunk */
};

/* At most this many clusters per chunk of a guest write. */
#define QCOW2_CHUNK_MAX 4096u

/* One L2 entry change of a chunk, applied once its data is written. */
struct qcow2_l2_upd {
  uint64_t idx;                  /* entry index in the table */
  uint64_t entry;
  uint64_t bitmap;
  uint64_t old;                  /* entry whose cluster loses a reference */
};

/* A run of clusters whose refcounts drop by one at the next flush. */
struct qcow2_free_range {
  uint64_t first;
  uint64_t count;
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
/* Keep at most n tables (at least the minimum); a cache holding dirty
 * tables is left as it is. */
void qcow2_l2_cache_limit (struct qcow2_l2_cache *c, unsigned n);
/* The bytes to cache of each table of cluster_size bytes holding 2^*bits
 * entries: the whole table for a writer (it copies and writes tables
 * back), else slices of at most QCOW2_L2_SLICE; *bits becomes log2 of the
 * entries in one. */
uint32_t qcow2_cache_slice (const struct qcow2_state *s, unsigned *bits);
/* The table at host offset off (already validated), read on a miss. */
int qcow2_l2_cache_get (struct qcow2_l2_cache *c, struct io *io, uint64_t off,
                        const unsigned char **table);
/* Forget a table (for a writer that changed it on disk). */
void qcow2_l2_cache_drop (struct qcow2_l2_cache *c, uint64_t off);
/* Same cache with n slots (at least 4): the refcount block cache. */
int qcow2_l2_cache_init_n (struct qcow2_l2_cache *c, uint32_t table_size,
                           unsigned n);
/* The table at off for changing: marked dirty, written back by
 * qcow2_l2_cache_write_dirty or on eviction. */
int qcow2_l2_cache_get_mut (struct qcow2_l2_cache *c, struct io *io,
                            uint64_t off, unsigned char **table);
/* A table newly allocated at off: all zeroes, dirty, never read. */
int qcow2_l2_cache_get_new (struct qcow2_l2_cache *c, struct io *io,
                            uint64_t off, unsigned char **table);
/* Write every dirty table (one io_pwrite each) and mark it clean. */
int qcow2_l2_cache_write_dirty (struct qcow2_l2_cache *c, struct io *io);

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

/* Entry i of a refcount block of width 1 << order bits (any order 0..6). */
static inline uint64_t
qcow2_rb_get (const unsigned char *b, unsigned order, uint64_t i)
{
  switch (order)
    {
    case 6: return get_be64 (b + 8 * i);
    case 5: return get_be32 (b + 4 * i);
    case 4: return get_be16 (b + 2 * i);
    case 3: return b[i];
    default:
      /* Sub-byte widths: entry 0 in the least significant bits. */
      return (b[(i << order) / 8] >> ((i << order) % 8))
        & ((1u << (1u << order)) - 1);
    }
}


static inline void
qcow2_rb_put (unsigned char *b, unsigned order, uint64_t i, uint64_t v)
{
  unsigned mask, shift;

  switch (order)
    {
    case 6: put_be64 (b + 8 * i, v); break;
    case 5: put_be32 (b + 4 * i, (uint32_t) v); break;
    case 4: put_be16 (b + 2 * i, (uint16_t) v); break;
    case 3: b[i] = (unsigned char) v; break;
    default:
      mask = (1u << (1u << order)) - 1;
      shift = (i << order) % 8;
      b[(i << order) / 8] = (unsigned char)
        ((b[(i << order) / 8] & ~(mask << shift)) | ((v & mask) << shift));
      break;
    }
}

/* refcount.c: the refcount of host cluster `cluster` (0 past the table). */
int qcow2_get_refcount (struct qcow2_state *s, uint64_t cluster,
                        uint64_t *rc);
/* qemu's heuristic: more clusters in use than the host file allocates
 * means metadata preallocation, where DATA clusters may be host holes
 * that read as zero (qemu's BDRV_BLOCK_RECURSE). Computed once. */
int qcow2_metadata_preallocated (struct qcow2_state *s, bool *yes);
void qcow2_free_refcounts (struct qcow2_state *s);

/* qcow2.c: read [off, off+n) (inside the virtual size) from this layer;
 * unallocated ranges read as zeroes, or with through as the backing view. */
int qcow2_read_range (struct qcow2_state *s, void *buf, size_t n,
                      uint64_t off, bool through);
/* qcow2.c: the mapping of guest offset off, one (sub)cluster or, where no
 * L2 table exists, the rest of the L1 entry's range; *unit_len is the
 * length from off to the end of that unit. */
int qcow2_map_at (struct qcow2_state *s, uint64_t off, struct qcow2_map *m,
                  uint64_t *unit_len);

/* ---- write side ------------------------------------------------------ */

/* refcount.c (write side). All changes go to the refcount block cache and
 * reach the disk in qcow2_refcount_writeback. */
/* Add delta (+1 or -1) to the refcount of cluster; an increment allocates
 * the refcount block (and grows the refcount table) as needed. */
int qcow2_refcount_add (struct qcow2_state *s, uint64_t cluster, int delta);
/* The refcount block for cluster exists afterwards (it, and a grown
 * table, may have taken free clusters, cluster itself among them). */
int qcow2_refcount_prepare (struct qcow2_state *s, uint64_t cluster);
/* For repair: set the refcount of cluster to value (write-back, refcount
 * blocks allocated as needed). */
int qcow2_refcount_set (struct qcow2_state *s, uint64_t cluster,
                        uint64_t value);
/* Write dirty refcount blocks, then (after a barrier) dirty refcount
 * table entries in one write. No final barrier. */
int qcow2_refcount_writeback (struct qcow2_state *s);
/* Load the refcount table and set up the block cache (idempotent). */
int qcow2_refcount_init (struct qcow2_state *s);

/* alloc.c: the cluster allocator. */
/* Up to want (>= 1) contiguous free clusters with refcount 1: *first, *got. */
int qcow2_alloc_clusters (struct qcow2_state *s, uint64_t want,
                          uint64_t *first, uint64_t *got);
/* Exactly n contiguous clusters with refcount 1. */
int qcow2_alloc_contig (struct qcow2_state *s, uint64_t n, uint64_t *first);
/* Free clusters without touching refcounts: the first of n contiguous,
 * the cursor moved past them (the caller sets their refcounts). */
int qcow2_alloc_noref (struct qcow2_state *s, uint64_t n, uint64_t *first);
/* len bytes for compressed data, packed after the previous ones as qemu
 * does; the refcount of each cluster touched is incremented. */
int qcow2_alloc_bytes (struct qcow2_state *s, uint64_t len, uint64_t *off);
/* Drop one reference to each of count clusters at the next flush, once
 * the metadata no longer referencing them is on disk. */
int qcow2_free_later (struct qcow2_state *s, uint64_t first, uint64_t count);
/* The same for the clusters a compressed descriptor touches, or the
 * cluster a standard entry points to (nothing for unallocated entries). */
int qcow2_free_entry_later (struct qcow2_state *s, uint64_t entry);
/* Apply the pending decrements (flush calls this after its barrier). */
int qcow2_apply_pending_frees (struct qcow2_state *s);
/* From now on allocate only past every cluster in use so far (for
 * rebuilding refcounts that may be too low). */
void qcow2_alloc_append_only (struct qcow2_state *s);
/* The file now extends to at least end (bytes): allocation past EOF. */
void qcow2_note_file_end (struct qcow2_state *s, uint64_t end);

/* flush.c: ordered write-back. */
/* io_pwrite that remembers a barrier is due. */
/* Guest data from the caller's buffer: to the data sink when there is one. */
int qcow2_write_data (struct qcow2_state *s, const void *buf, size_t n,
                      uint64_t off);
void qcow2_set_data_sink_op (void *st, const struct data_sink *sink);
int qcow2_write (struct qcow2_state *s, const void *buf, size_t n,
                 uint64_t off);
/* fsync if anything was written since the last one. */
/* Queued data written (not yet synced). */
int qcow2_drain_data (struct qcow2_state *s);
int qcow2_barrier (struct qcow2_state *s);
/* Dirty L2 tables to disk after the refcounts they depend on. */
int qcow2_writeback_l2 (struct qcow2_state *s);
int qcow2_flush_op (void *st);
/* Mark L1 entry i changed in memory. */
void qcow2_l1_dirty (struct qcow2_state *s, uint64_t i);
/* The first header_length bytes from s->h (one write), for resize and
 * table moves. */
int qcow2_write_header_fields (struct qcow2_state *s);

/* writer.c: open/close of the write side. */
int qcow2_writer_open (struct qcow2_state *s);
void qcow2_writer_close (struct qcow2_state *s);
void qcow2_set_backing_reader_op (void *st, const struct backing_reader *br);

/* write.c: guest writes, write-zeroes, discard. */
int qcow2_pwrite_op (void *st, const void *buf, size_t n, uint64_t off);
int qcow2_zero_op (void *st, uint64_t off, uint64_t len);
int qcow2_discard_op (void *st, uint64_t off, uint64_t len);
int qcow2_unmap_op (void *st, uint64_t off, uint64_t len);
/* Entry i of L2 table t (bitmap: second word with extended L2, else 0). */
uint64_t qcow2_l2_get (const struct qcow2_state *s, const unsigned char *t,
                       uint64_t i, uint64_t *bitmap);
void qcow2_l2_put (const struct qcow2_state *s, unsigned char *t, uint64_t i,
                   uint64_t entry, uint64_t bitmap);
/* The L2 table for L1 index i, ready to change: allocated if missing,
 * copied if shared with a snapshot. */
int qcow2_l2_for_write (struct qcow2_state *s, uint64_t l1_idx,
                        unsigned char **table, uint64_t *l2_off);
/* Guest view of this image at [off, off+n): this layer, the backing
 * reader where unallocated (zeroes past the virtual size). */
int qcow2_view_read (struct qcow2_state *s, void *buf, size_t n,
                     uint64_t off);

/* compressed-write.c */
int qcow2_pwrite_compressed_op (void *st, const void *buf, size_t n,
                                uint64_t off);
/* compress.c: compress one cluster into dst (capacity dst_cap); returns
 * the compressed size, 0 when it does not fit, or -errno. */
int qcow2_compress_zlib (const char *name, void *dst, size_t dst_cap,
                         const void *src, size_t src_len);
int qcow2_compress_zstd (const char *name, void **cctx, void *dst,
                         size_t dst_cap, const void *src, size_t src_len);
void qcow2_zstd_cfree (void *cctx);

/* header.c (write side) and resize.c */
int qcow2_set_backing_op (void *st, const char *name, const char *format);
int qcow2_resize_op (void *st, uint64_t size);

/* create.c: the create op (a new empty image into an empty io). */
int qcow2_create_op (struct io *io, const struct create_params *p);

/* check.c: the check op (qemu-img check; repair with the write side). */
int qcow2_check_op (void *st, unsigned flags, struct qc_check_result *res,
                    qc_check_report_cb report, void *opaque);

#endif
