/* The raw format driver: the file is the guest view; holes read as zero, zeroes become holes. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "format.h"
#include "io.h"

struct raw_state {
  struct io *io;
  const struct data_sink *sink;
  uint64_t size;
};

static int
raw_open (struct io *io, unsigned flags, void **stp)
{
  struct raw_state *st;
  uint64_t size;
  int r;

  r = io_get_size (io, &size);
  if (r < 0)
    return r;
  /* qemu counts images in 512-byte sectors: a raw file's tail past EOF up
   * to the next sector boundary is part of the guest view (as zeroes). */
  if (size > UINT64_MAX - 511)
    return set_image_error (io->name, EFBIG, "file too large");
  size = ROUND_UP (size, (uint64_t) 512);
  st = calloc (1, sizeof *st);
  if (st == NULL)
    return set_image_error (io->name, ENOMEM, "out of memory");
  st->io = io;
  st->size = size;
  *stp = st;
  return 0;
}

static void
raw_close (void *stp)
{
  free (stp);
}

static void
raw_describe (void *stp, struct qc_info *info)
{
  struct raw_state *st = stp;

  info->format = "raw";
  info->virtual_size = st->size;
  info->cluster_size = 0;
  info->qcow2_version = 0;
  info->refcount_bits = 0;
  info->compression_type = NULL;
  info->backing_filename = NULL;
  info->backing_format = NULL;
  info->flags = 0;
  info->data_file = NULL;
  info->encryption = 0;
  info->nb_snapshots = 0;
  info->nb_bitmaps = 0;
}

/* Host and guest offsets coincide, so every extent has an offset, as
 * qemu reports for raw images: holes are ZERO at their own offset. */
static int
raw_status (void *stp, uint64_t off, uint64_t len, struct layer_extent *e)
{
  struct raw_state *st = stp;
  uint64_t run;
  bool is_data;
  int r;

  r = io_extent (st->io, off, len, &is_data, &run);
  if (r < 0)
    return r;
  /* A backend answering nothing usable must not stall the caller's walk. */
  if (run == 0 || run > len)
    run = len;
  e->len = run;
  e->type = is_data ? EXT_DATA : EXT_ZERO;
  e->has_offset = true;
  e->host_off = off;
  return 0;
}

static int
raw_read (void *stp, void *buf, size_t n, uint64_t off)
{
  struct raw_state *st = stp;

  return io_pread (st->io, buf, n, off);
}

/* ---- write side ---- */

static int
raw_create (struct io *io, const struct create_params *p)
{
  if (p->backing)
    return set_image_error (io->name, EINVAL,
                            "a raw image cannot have a backing file");
  /* Sparse: the whole guest view starts as one hole. */
  return io->ops->truncate (io, p->size);
}

static void
raw_set_backing_reader (void *stp, const struct backing_reader *br)
{
  /* Raw has no backing file: nothing below to copy from. */
}

static int
check_write (struct raw_state *st, uint64_t off, uint64_t n)
{
  if (!range_within (off, n, st->size))
    return set_image_error (st->io->name, EINVAL,
                            "write at %" PRIu64 "+%" PRIu64
                            " is past the end of the image (%" PRIu64 ")",
                            off, n, st->size);
  return 0;
}

static int
raw_pwrite (void *stp, const void *buf, size_t n, uint64_t off)
{
  struct raw_state *st = stp;
  int r = check_write (st, off, n);

  if (r < 0)
    return r;
  return st->sink ? st->sink->write (st->sink->opaque, buf, n, off)
    : io_pwrite (st->io, buf, n, off);
}

static void
raw_set_data_sink (void *stp, const struct data_sink *sink)
{
  struct raw_state *st = stp;

  st->sink = sink;
}

/* Raw cannot store compressed data; the bytes go out as they are. */
static int
raw_pwrite_compressed (void *stp, const void *buf, size_t n, uint64_t off)
{
  return raw_pwrite (stp, buf, n, off);
}

/* Punch a hole (the io backend falls back to ZERO_RANGE, then to writing
 * zeroes); zero and discard are the same thing for raw. */
static int
raw_zero (void *stp, uint64_t off, uint64_t len)
{
  struct raw_state *st = stp;
  int r = check_write (st, off, len);

  return r < 0 ? r : st->io->ops->zero (st->io, off, len);
}

static int
raw_flush (void *stp)
{
  struct raw_state *st = stp;
  int r = st->sink ? st->sink->drain (st->sink->opaque) : 0;

  return r < 0 ? r : st->io->ops->flush (st->io);
}

static int
raw_set_backing (void *stp, const char *name, const char *format)
{
  struct raw_state *st = stp;

  if (name == NULL || *name == '\0')
    return 0;
  return set_image_error (st->io->name, ENOTSUP,
                          "a raw image cannot have a backing file");
}

static int
raw_resize (void *stp, uint64_t size)
{
  struct raw_state *st = stp;
  int r;

  if (size < st->size)
    return set_image_error (st->io->name, EINVAL,
                            "shrinking from %" PRIu64 " to %" PRIu64
                            " bytes is not supported", st->size, size);
  r = st->io->ops->truncate (st->io, size);
  if (r == 0)
    st->size = size;
  return r;
}

static int
raw_check (void *stp, unsigned flags, struct qc_check_result *res,
           qc_check_report_cb report, void *opaque)
{
  struct raw_state *st = stp;

  return set_image_error (st->io->name, ENOTSUP,
                          "raw images have no metadata to check");
}

const struct format_ops raw_format = {
  .name = "raw",
  .open = raw_open,
  .close = raw_close,
  .describe = raw_describe,
  .snapshot = NULL,
  .bitmap = NULL,
  .status = raw_status,
  .read = raw_read,
  .create = raw_create,
  .set_backing_reader = raw_set_backing_reader,
  .pwrite = raw_pwrite,
  .set_data_sink = raw_set_data_sink,
  .pwrite_compressed = raw_pwrite_compressed,
  .zero = raw_zero,
  .discard = raw_zero,
  .flush = raw_flush,
  .set_backing = raw_set_backing,
  .resize = raw_resize,
  .check = raw_check,
};
