/* The one internal I/O interface: a file backend and an in-memory backend. */
#ifndef QC_IO_H
#define QC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io;

/* Every op returns 0 or -errno, having set the last error (naming io->name). */
struct io_ops {
  const char *kind;
  /* Read exactly n bytes; bytes at or past end of file read as zero. */
  int (*pread) (struct io *io, void *buf, size_t n, uint64_t off);
  int (*pwrite) (struct io *io, const void *buf, size_t n, uint64_t off);
  int (*flush) (struct io *io);
  int (*get_size) (struct io *io, uint64_t *size);
  int (*truncate) (struct io *io, uint64_t size);
  /* Make [off, off+len) read as zero, deallocating if possible. */
  int (*zero) (struct io *io, uint64_t off, uint64_t len);
  /* Host allocation at off (SEEK_DATA/SEEK_HOLE): *is_data and the length of
   * the run (up to len) with that state. Past EOF: a hole to len. */
  int (*extent) (struct io *io, uint64_t off, uint64_t len, bool *is_data,
                 uint64_t *run);
  /* Bytes allocated on the host (st_blocks * 512 for files). */
  int (*allocated) (struct io *io, uint64_t *bytes);
  void (*close) (struct io *io);
};

struct io {
  const struct io_ops *ops;
  char *name;           /* for messages: the path as the user gave it */
  bool writable;
  int fd;               /* -1 when not a file */
  int dfd;              /* the same file opened O_DIRECT, or -1 */
  bool dio_reads;       /* reads go through dfd too, not only writes */
  /* Grown ahead of direct writes (io_dio_reserve): `grown` is the size the
   * file was given, `end` the size its writers know (the size before the
   * first growth, or the end of a later write); a flush cuts the file back
   * to `end`. */
  bool growing, grow_failed;
  uint64_t grown, end;
  bool dio_refused;     /* a direct write was refused: writes go buffered */
  /* From here on nothing was ever written to the file, which then reads
   * as zeroes (a regular file's size at open, raised by every write
   * through io; UINT64_MAX for a device, whose old bytes stay): a writer
   * may leave zero blocks there unwritten. */
  uint64_t virgin;
  /* A read-only file's last allocation answer: [run_lo, run_hi) is data
   * (or a hole, which reads skip). Empty when run_hi is 0. */
  uint64_t run_lo, run_hi;
  bool run_data;
  /* Whether the file has holes worth skipping (SEEK_HOLE finds a
   * sixteenth or more in its first runs): 0 not asked yet, 1 yes, -1 no.
   * Without, there is little to skip, and SEEK_HOLE is costly on a file
   * whose zero ranges are fallocated (qemu's) and cached: the kernel
   * walks their pages. */
  signed char holes;
  /* The runs the first look found (read-only files): run i is
   * [probe_end[i-1] (0 for the first), probe_end[i]), data when bit i of
   * probe_data is set. */
#define IO_PROBE_RUNS 64
  unsigned char probe_n;
  uint64_t probe_data;
  uint64_t probe_end[IO_PROBE_RUNS];
};

/* Offset, length and buffer alignment for requests that go O_DIRECT. */
#define IO_DIO_ALIGN 4096u

static inline bool
io_dio_aligned (const void *buf, size_t n, uint64_t off)
{
  return off % IO_DIO_ALIGN == 0 && n % IO_DIO_ALIGN == 0
    && (uintptr_t) buf % IO_DIO_ALIGN == 0;
}

#define IO_WRITE  (1u << 0)   /* open read-write */
#define IO_CREATE (1u << 1)   /* create (must not exist) */

int io_open_file (const char *path, unsigned flags, struct io **out);
/* The file behind fd opened again with O_DIRECT and mode (O_RDONLY,
 * O_WRONLY, O_RDWR), through /proc/self/fd; -1 when the file system
 * refuses O_DIRECT or the path no longer leads to the same file. */
int io_reopen_direct (int fd, int mode);
/* From now on, requests aligned to IO_DIO_ALIGN in offset, length and
 * buffer bypass the page cache (cold data a job should not cache); the
 * rest stay buffered. A file system without O_DIRECT leaves io as it was. */
void io_set_direct (struct io *io);
/* From now on, aligned writes bypass the page cache; reads stay buffered
 * (they read what the writes left: the kernel keeps the two coherent).
 * Returns whether they do (false: no O_DIRECT on this file system). */
bool io_set_direct_writes (struct io *io);
/* Before a direct write that ends at `end` and that does not go through
 * io_pwrite (an engine request on io->dfd): a write past the file's end
 * would wait for the disk under the inode lock, so a regular file is
 * grown ahead by fallocate, in steps growing with the file. Only a hint:
 * a file that cannot grow is written all the same. */
void io_dio_reserve (struct io *io, uint64_t end);
/* The descriptor for a write of n bytes from buf at off that does not go
 * through io_pwrite (an engine request): the O_DIRECT one when io has it
 * and the request is aligned (the file grown ahead of it), else the
 * buffered one; either way the cut-back at the next flush keeps it. */
int io_write_fd (struct io *io, const void *buf, size_t n, uint64_t off);
/* Any other write that did not go through io (copy_file_range, engine
 * requests on io->fd) ending at `end`: the cut-back at the next flush
 * must keep it. */
static inline void
io_note_end (struct io *io, uint64_t end)
{
  if (io->growing && end > io->end)
    io->end = end;
}
/* A write ending at `end` that io did not see itself (copy_file_range):
 * what lies below it is no longer virgin. */
static inline void
io_note_written (struct io *io, uint64_t end)
{
  if (end > io->virgin)
    io->virgin = end;
}
/* The file reaches at least `end` (grown by ftruncate if shorter, and
 * kept so by the next flush): zero blocks left unwritten at its end. */
int io_extend (struct io *io, uint64_t end);
/* The file system refused a direct write (EINVAL): io's writes go
 * through the page cache from now on. */
static inline void
io_direct_refused (struct io *io)
{
  io->dio_refused = true;
}
/* Have the kernel start reading [off, off+len) into the page cache
 * (a hint: nothing for a memory io, and a failure changes nothing). */
void io_willneed (struct io *io, uint64_t off, uint64_t len);
/* fsync the directory dir (a rename or unlink in it made durable). */
int io_fsync_dir (const char *dir);
/* An in-memory image holding a copy of data[0..len). */
int io_open_mem (const char *name, const void *data, size_t len,
                 struct io **out);
/* The bytes of a memory io (for tests). */
const unsigned char *io_mem_data (struct io *io, size_t *len);
/* Crash simulation: only the first `limit` writes (pwrite, truncate, zero)
 * land; later ones succeed without effect. Resets the write counter. */
void io_mem_set_write_limit (struct io *io, uint64_t limit);
/* Writes attempted since the last io_mem_set_write_limit (or open). */
uint64_t io_mem_writes (struct io *io);

static inline int
io_pread (struct io *io, void *buf, size_t n, uint64_t off)
{
  return io->ops->pread (io, buf, n, off);
}

static inline int
io_pwrite (struct io *io, const void *buf, size_t n, uint64_t off)
{
  io_note_written (io, off + n);
  return io->ops->pwrite (io, buf, n, off);
}

static inline int
io_get_size (struct io *io, uint64_t *size)
{
  return io->ops->get_size (io, size);
}

static inline int
io_extent (struct io *io, uint64_t off, uint64_t len, bool *is_data,
           uint64_t *run)
{
  return io->ops->extent (io, off, len, is_data, run);
}

/* How much of [off, off+n) is, from off on, data (*is_data) or a hole of
 * a read-only file, by the answer io's own reads use (SEEK_DATA/SEEK_HOLE,
 * the first runs and the last answer kept): requests that do not go
 * through io_pread (the engine's) skip the holes with it. A writable file, a memory io, or a
 * file system that cannot tell: all data. At least 1 for n > 0. */
uint64_t io_data_run (struct io *io, uint64_t off, uint64_t n, bool *is_data);

void io_close (struct io *io);

#endif
