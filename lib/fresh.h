/* Writes that leave zero runs out of a file's never-written space. */
#ifndef QC_FRESH_H
#define QC_FRESH_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"

/* Zero runs left out, at least: a write cut around a shorter one costs a
 * request more than the bytes it saves. 64-layer flatten, 31 MiB of
 * clusters, 18 MiB of it data: 38.0 ms writing them all, 29.7 ms from
 * 16 KiB, 29.6 from 4 KiB, 36.2 from 64 KiB; a 2 GiB deep copy, 1431 MiB
 * of clusters, 1265 MiB written from 16 KiB in five times the requests:
 * 1.15 vs 1.18 s. */
#define FRESH_HOLE_MIN (16u << 10)

/* One writer's writes whose last blocks were left out: the file must
 * still reach their end before metadata points there. */
struct fresh {
  uint64_t hole_end;                 /* the furthest such end */
  uint64_t extended;                 /* what the file was extended to */
};

/* Where the data of a write goes: 0 or -errno after set_error. */
typedef int (*fresh_emit) (void *opaque, const void *buf, size_t n,
                           uint64_t off);

/* n bytes of buf at off written through emit, less the zero runs of
 * FRESH_HOLE_MIN or more (in IO_DIO_ALIGN blocks of the file) that lie
 * where io's file was never written and so reads as zeroes: most of a
 * 64 KiB cluster that holds a 4 KiB write then costs the disk nothing.
 * Pieces keep buf's alignment to IO_DIO_ALIGN. io NULL: all of it. */
int fresh_write (struct io *io, struct fresh *f, const void *buf, size_t n,
                 uint64_t off, fresh_emit emit, void *opaque);

/* The file reaches the end of every write whose last blocks were left
 * out; 0 or -errno after set_error. */
int fresh_extend (struct io *io, struct fresh *f);

#endif
