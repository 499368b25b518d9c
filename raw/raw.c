/* The raw format driver, read side: the file is the guest view, holes read as zero. */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "errors.h"
#include "rounding.h"
#include "format.h"
#include "io.h"

struct raw_state {
  struct io *io;
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

const struct format_ops raw_format = {
  .name = "raw",
  .open = raw_open,
  .close = raw_close,
  .describe = raw_describe,
  .snapshot = NULL,
  .bitmap = NULL,
  .status = raw_status,
  .read = raw_read,
};
