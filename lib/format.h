/* The format driver interface: one struct of callbacks per format (qcow2, raw). */
#ifndef QC_FORMAT_H
#define QC_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#include "qchain.h"
#include "io.h"

/* What a layer holds at a guest offset, looking at that layer alone. */
enum ext_type {
  EXT_UNALLOC = 0,   /* not in this layer: read the backing file */
  EXT_ZERO,          /* reads as zeroes (zero flag, or a hole in raw) */
  EXT_DATA,          /* data in this layer's file */
  EXT_COMPRESSED,    /* compressed data (no single host offset) */
};

struct layer_extent {
  uint64_t len;          /* bytes from the queried offset, > 0 */
  enum ext_type type;
  bool has_offset;       /* host_off valid: DATA; ZERO or UNALLOC inside an
                            allocated (sub)cluster of a preallocated image */
  uint64_t host_off;     /* host offset of the first byte */
  bool recurse;          /* DATA may be a hole in the host file: ask it (qemu
                            does so for metadata-preallocated qcow2 only) */
};

#define FMT_OPEN_WRITE    (1u << 0)
/* Open for check --repair: allowed on images marked dirty or corrupt. */
#define FMT_OPEN_REPAIR   (1u << 2)
/* Open to describe only: encrypted images and external data files are
 * accepted, but status/read refuse. */
#define FMT_OPEN_DESCRIBE (1u << 1)
/* With FMT_OPEN_WRITE: a new file no one sees until it is flushed and
 * published under its name (a copy's temporary DEST). A crash leaves it
 * unnamed, to be removed, so its writes need no barriers between them:
 * only a flush syncs. */
#define FMT_OPEN_UNORDERED (1u << 3)

/* The guest view below a layer (its backing chain), for copy-on-write of
 * partly written (sub)clusters. Bytes past the backing's end read as zero. */
struct backing_reader {
  int (*read) (void *opaque, void *buf, size_t n, uint64_t off);
  void *opaque;
  uint64_t size;                 /* guest size of the view below */
};

/* Where a writer may send guest data instead of writing it itself: the
 * job's I/O engine. write queues n bytes at host offset off of the image's
 * file from buf, which is always the caller's pwrite buffer and stays valid
 * until drain; drain returns when every queued write is done (the first
 * error, or 0). A writer drains before anything that must follow the data
 * (its metadata barrier, flush) and never writes the same bytes itself
 * while a queued write may be in flight. */
struct data_sink {
  int (*write) (void *opaque, const void *buf, size_t n, uint64_t off);
  int (*drain) (void *opaque);
  void *opaque;
};

/* What `create` makes. Zero fields take qemu-img's defaults. */
struct create_params {
  uint64_t size;
  const char *backing;           /* name recorded in the header, or NULL */
  const char *backing_format;    /* recorded in the backing-format extension */
  uint32_t version;              /* 2 (compat=0.10) or 3 (compat=1.1) */
  uint32_t cluster_size;         /* 512 .. 2 MiB, power of two */
  uint32_t refcount_bits;        /* 1 .. 64, power of two */
  bool extended_l2;
  bool lazy_refcounts;
  bool zstd;                     /* compression_type=zstd */
};

struct format_ops {
  const char *name;
  /* Open the image on io; io stays owned by the caller and outlives st. */
  int (*open) (struct io *io, unsigned flags, void **st);
  void (*close) (void *st);
  /* Keep metadata caches to about bytes (NULL: nothing cached). */
  void (*set_cache_limit) (void *st, uint64_t bytes);
  /* Fill the format's part of info: virtual_size, cluster_size, version,
   * refcount_bits, compression_type, backing_filename, backing_format, flags,
   * data_file, encryption, nb_snapshots, nb_bitmaps. Strings belong to st. */
  void (*describe) (void *st, struct qc_info *info);
  /* Snapshot `index` (< nb_snapshots), strings belonging to st. NULL if none. */
  int (*snapshot) (void *st, uint32_t index, struct qc_snapshot_info *out);
  /* Persistent dirty bitmap `index` (< nb_bitmaps). NULL if none. */
  int (*bitmap) (void *st, uint32_t index, struct qc_bitmap_info *out);
  /* The extent at guest offset off, at most len bytes (off < virtual size,
   * len > 0, off + len <= virtual size). A DATA run has contiguous host
   * offsets. Each metadata table is read at most once for a sequence of
   * calls at increasing offsets. */
  int (*status) (void *st, uint64_t off, uint64_t len, struct layer_extent *e);
  /* Read [off, off+n) of this layer alone: DATA and COMPRESSED ranges from
   * the file, ZERO and UNALLOC ranges as zeroes. */
  int (*read) (void *st, void *buf, size_t n, uint64_t off);

  /* ---- write side: st opened with FMT_OPEN_WRITE ----
   * Writes may stay in write-back caches until flush; nothing written is
   * referenced by metadata before it is on disk, and refcounts are never
   * below the references that reach the disk (a crash leaks, never
   * corrupts). */

  /* Write a new, empty image of this format into io (empty, writable). */
  int (*create) (struct io *io, const struct create_params *p);
  /* Where copy-on-write reads the view below; NULL = no backing (zeroes). */
  void (*set_backing_reader) (void *st, const struct backing_reader *br);
  int (*pwrite) (void *st, const void *buf, size_t n, uint64_t off);
  /* Send pwrite's guest data to sink (NULL: write it synchronously). The
   * sink must outlive its use: reset it to NULL before it goes away. */
  void (*set_data_sink) (void *st, const struct data_sink *sink);
  /* Whole clusters (off and n cluster-aligned, or n reaching the virtual
   * size), compressed with the image's compression type; a cluster that
   * does not shrink is written plainly. */
  int (*pwrite_compressed) (void *st, const void *buf, size_t n,
                            uint64_t off);
  /* Afterwards [off, off+len) reads as zeroes. zero may keep preallocated
   * clusters (zero flag); discard frees what it can. */
  int (*zero) (void *st, uint64_t off, uint64_t len);
  int (*discard) (void *st, uint64_t off, uint64_t len);
  /* Whole clusters of [off, off+len) become unallocated: they read from
   * the backing file again (parts of clusters stay). NULL: cannot. */
  int (*unmap) (void *st, uint64_t off, uint64_t len);
  /* Write back every cache in crash-safe order, then fsync. */
  int (*flush) (void *st);
  /* Rewrite the backing name and format (NULL name = none) in one write of
   * the header cluster, then fsync. */
  int (*set_backing) (void *st, const char *name, const char *format);
  /* Grow the virtual size (never shrinks). */
  int (*resize) (void *st, uint64_t size);
  /* Consistency check (qemu-img check); QC_CHECK_REPAIR_* need an st
   * opened with FMT_OPEN_WRITE | FMT_OPEN_REPAIR. Returns 0, or -errno
   * when the check could not finish. Each finding goes to report (may be
   * NULL) as one line. */
  int (*check) (void *st, unsigned flags, struct qc_check_result *res,
                qc_check_report_cb report, void *opaque);
};

extern const struct format_ops qcow2_format;
extern const struct format_ops raw_format;

/* "qcow2" or "raw" to ops; NULL for anything else. */
const struct format_ops *format_by_name (const char *name);
/* True when the first bytes of io carry the qcow2 magic. */
int format_is_qcow2 (struct io *io, bool *yes);

#endif
