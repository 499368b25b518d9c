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
  bool has_offset;       /* host_off valid (DATA; ZERO with a preallocated cluster) */
  uint64_t host_off;     /* host offset of the first byte */
};

#define FMT_OPEN_WRITE    (1u << 0)
/* Open to describe only: encrypted images and external data files are
 * accepted, but status/read refuse. */
#define FMT_OPEN_DESCRIBE (1u << 1)

struct format_ops {
  const char *name;
  /* Open the image on io; io stays owned by the caller and outlives st. */
  int (*open) (struct io *io, unsigned flags, void **st);
  void (*close) (void *st);
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
};

extern const struct format_ops qcow2_format;
extern const struct format_ops raw_format;

/* "qcow2" or "raw" to ops; NULL for anything else. */
const struct format_ops *format_by_name (const char *name);
/* True when the first bytes of io carry the qcow2 magic. */
int format_is_qcow2 (struct io *io, bool *yes);

#endif
