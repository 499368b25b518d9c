/* Fuzz target: open any bytes as a qcow2 or raw image and walk its whole guest view. */
#include <config.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "format.h"
#include "io.h"
#include "rounding.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Bounded work per input: a hostile image may claim a huge virtual size. */
#define MAX_STEPS 4096

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const struct format_ops *ops;
  struct qc_info info = { .struct_size = sizeof info };
  struct io *io;
  void *st;
  bool qcow2;
  uint64_t off = 0;
  unsigned steps;
  static char buf[65536];

  if (io_open_mem ("fuzz", data, size, &io) < 0)
    return 0;
  if (format_is_qcow2 (io, &qcow2) < 0)
    goto out;
  ops = qcow2 ? &qcow2_format : &raw_format;
  if (ops->open (io, 0, &st) < 0)
    goto out;
  ops->describe (st, &info);
  for (steps = 0; steps < MAX_STEPS && off < info.virtual_size; steps++) {
    struct layer_extent e;
    uint64_t n;

    if (ops->status (st, off, info.virtual_size - off, &e) < 0)
      break;
    if (e.len == 0 || e.len > info.virtual_size - off)
      abort ();                  /* a driver bug, not bad input */
    n = MIN (e.len, (uint64_t) sizeof buf);
    if (ops->read (st, buf, n, off) < 0)
      break;
    off += e.len;
  }
  ops->close (st);
 out:
  io_close (io);
  return 0;
}
