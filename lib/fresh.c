/* Writes that leave zero runs out of a file's never-written space. */
#include <config.h>

#include "fresh.h"
#include "iszero.h"
#include "rounding.h"

int
fresh_write (struct io *io, struct fresh *f, const void *buf, size_t n,
             uint64_t off, fresh_emit emit, void *opaque)
{
  const uint64_t blk = IO_DIO_ALIGN;
  const char *p = buf;
  uint64_t v = io ? io->virgin : UINT64_MAX;
  uint64_t end = off + n, w = off, a, z;
  int r;

  if (end <= v || end - MAX (off, v) < FRESH_HOLE_MIN)
    return emit (opaque, p, n, off);
  for (a = ROUND_UP (MAX (off, v), blk); a + blk <= end; a = z + blk) {
    for (z = a; z + blk <= end && is_zero (p + (z - off), blk); z += blk)
      ;
    if (z - a < FRESH_HOLE_MIN)
      continue;
    if (a > w && (r = emit (opaque, p + (w - off), a - w, w)) < 0)
      return r;
    w = z;
  }
  if (w < end)
    return emit (opaque, p + (w - off), end - w, w);
  /* The tail left out: the file must reach its end all the same (io's
   * known end now, the file's own at fresh_extend). */
  io_note_written (io, end);
  io_note_end (io, end);
  f->hole_end = MAX (f->hole_end, end);
  return 0;
}

int
fresh_extend (struct io *io, struct fresh *f)
{
  int r;

  if (io == NULL || f->hole_end <= f->extended)
    return 0;
  if ((r = io_extend (io, f->hole_end)) < 0)
    return r;
  f->extended = f->hole_end;
  return 0;
}
