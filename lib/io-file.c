/* The file backend of the I/O interface: pread/pwrite on a file descriptor. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "errors.h"
#include "io.h"
#include "rounding.h"

/* The steps a file grows by ahead of direct writes: an eighth of its size,
 * at least 8 MiB (a small job grows it little) and at most 256 MiB (each
 * fallocate waits for the direct writes in flight). */
#define GROW_MIN (8ull << 20)
#define GROW_MAX (256ull << 20)

/* The O_DIRECT descriptor for an aligned request, else the buffered one. */
static int
pick_fd (const struct io *io, const void *p, size_t n, uint64_t off)
{
  if (io->dfd >= 0 && io_dio_aligned (p, n, off))
    return io->dfd;
  return io->fd;
}

void
io_dio_reserve (struct io *io, uint64_t end)
{
  struct stat st;
  uint64_t to;

  if (io->fd < 0 || io->grow_failed)
    return;
  if (!io->growing) {
    if (fstat (io->fd, &st) < 0 || !S_ISREG (st.st_mode)) {
      io->grow_failed = true;
      return;
    }
    io->growing = true;
    io->grown = io->end = (uint64_t) st.st_size;
  }
  if (end > io->end)
    io->end = end;
  if (end <= io->grown)
    return;
  if (ADD_OVERFLOW (io->grown, MIN (MAX (io->grown / 8, GROW_MIN), GROW_MAX),
                    &to) || to > (UINT64_MAX >> 2) || end > (UINT64_MAX >> 2))
    return;
  to = ROUND_UP (MAX (to, end), (uint64_t) 1 << 20);
  /* Unwritten extents: writes into them are overwrites, which the file
   * system lets run in parallel and complete asynchronously. Without
   * fallocate, a sparse size does nearly as well. */
  if (fallocate (io->fd, 0, (off_t) io->grown, (off_t) (to - io->grown)) < 0
      && (errno != EOPNOTSUPP || ftruncate (io->fd, (off_t) to) < 0)) {
    /* No room to spare, say: the writes extend the file themselves. */
    io->grow_failed = true;
    return;
  }
  io->grown = to;
}

/* The descriptor a write goes through. */
static int
write_fd (const struct io *io, const void *p, size_t n, uint64_t off)
{
  return io->dio_refused ? io->fd : pick_fd (io, p, n, off);
}

int
io_write_fd (struct io *io, const void *buf, size_t n, uint64_t off)
{
  int fd = write_fd (io, buf, n, off);

  io_note_written (io, off + n);
  if (fd != io->fd)
    io_dio_reserve (io, off + n);
  else
    io_note_end (io, off + n);
  return fd;
}

int
io_extend (struct io *io, uint64_t end)
{
  struct stat st;

  io_note_end (io, end);
  if (io->fd < 0)
    return 0;
  if (fstat (io->fd, &st) < 0)
    return set_image_error (io->name, errno, "stat: %m");
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size < end
      && ftruncate (io->fd, (off_t) end) < 0)
    return set_image_error (io->name, errno, "truncate to %" PRIu64 ": %m",
                            end);
  return 0;
}

/* Cut a file grown ahead back to the size its writers know. */
static int
cut_back (struct io *io)
{
  if (!io->growing || io->grown <= io->end)
    return 0;
  if (ftruncate (io->fd, (off_t) io->end) < 0)
    return set_image_error (io->name, errno, "truncate to %" PRIu64 ": %m",
                            io->end);
  io->grown = io->end;
  return 0;
}

/* SEEK_DATA/SEEK_HOLE at off: *is_data and where that run ends (past
 * EOF: a hole without end). A file system without them (EINVAL) reports
 * all data. -errno on other errors. */
static int
seek_run (int fd, uint64_t off, bool *is_data, uint64_t *end)
{
  off_t data, hole;

  data = lseek (fd, (off_t) off, SEEK_DATA);
  if (data < 0) {
    if (errno != ENXIO && errno != EINVAL && errno != EOPNOTSUPP)
      return -errno;
    *is_data = errno != ENXIO;   /* ENXIO: no data from off to EOF */
    *end = UINT64_MAX;
    return 0;
  }
  if ((uint64_t) data > off) {
    *is_data = false;
    *end = (uint64_t) data;
    return 0;
  }
  hole = lseek (fd, (off_t) off, SEEK_HOLE);
  if (hole < 0)
    return -errno;
  *is_data = true;
  *end = (uint64_t) hole;
  return 0;
}

/* Walks a read-only file's first runs (IO_PROBE_RUNS at most) and keeps
 * them in io->probe_end / probe_data, so that the reads of a small file
 * (a deep chain's layers) ask the file system nothing more. Walked to the
 * end, the runs end with a hole to UINT64_MAX. */
static void
probe_runs (struct io *io, uint64_t size)
{
  uint64_t off = 0, end = 0;
  unsigned n = 0;
  bool data;

  io->probe_data = 0;
  while (n < IO_PROBE_RUNS && off < size
         && seek_run (io->fd, off, &data, &end) == 0 && end > off) {
    io->probe_data |= (uint64_t) data << n;
    io->probe_end[n++] = off = end;
  }
  if (n > 0 && n < IO_PROBE_RUNS && off >= size && end != UINT64_MAX)
    io->probe_end[n++] = UINT64_MAX;    /* past the end: a hole */
  io->probe_n = (unsigned char) n;
}

/* Whether a file has enough holes to look for: a sixteenth or more of
 * what its probed runs cover. st_blocks cannot tell: it counts qemu's
 * fallocated zero ranges, which SEEK_HOLE reports as holes until they are
 * cached (then as data: their pages read cheaply, and looking for holes
 * walks them). */
static bool
has_holes (struct io *io)
{
  struct stat st;
  uint64_t lo = 0, hole = 0, size;
  unsigned i;

  if (io->holes != 0)
    return io->holes > 0;
  io->holes = -1;
  if (fstat (io->fd, &st) < 0 || !S_ISREG (st.st_mode))
    return false;
  size = (uint64_t) st.st_size;
  probe_runs (io, size);
  for (i = 0; i < io->probe_n && lo < size; i++) {
    uint64_t hi = MIN (io->probe_end[i], size);

    if (!(io->probe_data >> i & 1))
      hole += hi - lo;
    lo = hi;
  }
  if (lo > 0 && hole >= lo / 16)
    io->holes = 1;
  return io->holes > 0;
}

/* The probed run holding off: its index, or -1 past what was probed. */
static int
probed_run (const struct io *io, uint64_t off)
{
  unsigned lo = 0, hi = io->probe_n;

  if (hi == 0 || off >= io->probe_end[hi - 1])
    return -1;
  while (lo < hi) {              /* the first run ending past off */
    unsigned mid = lo + (hi - lo) / 2;

    if (io->probe_end[mid] > off)
      hi = mid;
    else
      lo = mid + 1;
  }
  return (int) lo;
}

/* How much of [off, off+n) a read-only file holds as data (*is_data) or
 * as a hole from off on. A hole reads as zeroes without being read: the
 * kernel would fill new page-cache pages with zeroes for it (qemu's
 * partial clusters are fallocated zero ranges; a copy makes them holes),
 * and on a VM whose host takes back free memory each such page costs as
 * much as reading a disk. A file that may change under us (writable), one
 * without holes, or an answer the file system cannot give, is all data. */
static size_t
read_run (struct io *io, uint64_t off, size_t n, bool *is_data)
{
  int k;

  if (io->writable || !has_holes (io)) {
    *is_data = true;
    return n;
  }
  k = probed_run (io, off);
  if (k >= 0) {
    *is_data = io->probe_data >> k & 1;
    return (size_t) MIN ((uint64_t) n, io->probe_end[k] - off);
  }
  if (off < io->run_lo || off >= io->run_hi) {
    bool d = true;
    uint64_t end = UINT64_MAX;
    if (seek_run (io->fd, off, &d, &end) < 0 || end <= off) {
      d = true;
      end = UINT64_MAX;
    }
    io->run_lo = off;
    io->run_hi = end;
    io->run_data = d;
  }
  *is_data = io->run_data;
  return (size_t) MIN ((uint64_t) n, io->run_hi - off);
}

uint64_t
io_data_run (struct io *io, uint64_t off, uint64_t n, bool *is_data)
{
  if (io->fd < 0 || n == 0) {        /* memory: no holes */
    *is_data = true;
    return n;
  }
  return read_run (io, off, (size_t) MIN (n, (uint64_t) SIZE_MAX), is_data);
}

static int
file_pread (struct io *io, void *buf, size_t n, uint64_t off)
{
  char *p = buf;

  while (n > 0) {
    bool is_data;
    size_t k = read_run (io, off, n, &is_data);
    int fd = io->dio_reads ? pick_fd (io, p, k, off) : io->fd;
    ssize_t r;

    if (!is_data) {
      memset (p, 0, k);
      p += k;
      n -= k;
      off += k;
      continue;
    }
    r = pread (fd, p, k, (off_t) off);
    /* A device with a larger logical block than IO_DIO_ALIGN refuses
     * the direct request: the buffered descriptor takes it. */
    if (r < 0 && errno == EINVAL && fd != io->fd)
      r = pread (io->fd, p, k, (off_t) off);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return set_image_error (io->name, errno, "read at offset %" PRIu64 ": %m",
                              off);
    }
    if (r == 0) {                /* end of file: the rest reads as zeroes */
      memset (p, 0, n);
      return 0;
    }
    p += r;
    n -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

static int
file_pwrite (struct io *io, const void *buf, size_t n, uint64_t off)
{
  const char *p = buf;

  (void) io_write_fd (io, p, n, off);
  while (n > 0) {
    int fd = write_fd (io, p, n, off);
    ssize_t r = pwrite (fd, p, n, (off_t) off);
    if (r < 0 && errno == EINVAL && fd != io->fd) {
      io_direct_refused (io);
      r = pwrite (io->fd, p, n, (off_t) off);
    }
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return set_image_error (io->name, errno,
                              "write at offset %" PRIu64 ": %m", off);
    }
    p += r;
    n -= (size_t) r;
    off += (uint64_t) r;
  }
  return 0;
}

static int
file_flush (struct io *io)
{
  int r = cut_back (io);

  if (r < 0)
    return r;
  if (fdatasync (io->fd) < 0)
    return set_image_error (io->name, errno, "flush: %m");
  return 0;
}

static int
file_get_size (struct io *io, uint64_t *size)
{
  struct stat st;

  if (fstat (io->fd, &st) < 0)
    return set_image_error (io->name, errno, "stat: %m");
  if (S_ISBLK (st.st_mode)) {
    off_t end = lseek (io->fd, 0, SEEK_END);
    if (end < 0)
      return set_image_error (io->name, errno, "seek: %m");
    *size = (uint64_t) end;
  }
  else
    *size = (uint64_t) st.st_size;
  /* What lies past the writers' end was only grown ahead. */
  if (io->growing && *size > io->end)
    *size = io->end;
  return 0;
}

static int
file_truncate (struct io *io, uint64_t size)
{
  if (ftruncate (io->fd, (off_t) size) < 0)
    return set_image_error (io->name, errno, "truncate to %" PRIu64 ": %m",
                            size);
  if (io->growing)
    io->grown = io->end = size;
  return 0;
}

static int
file_zero (struct io *io, uint64_t off, uint64_t len)
{
  static const char zeroes[65536];

  if (fallocate (io->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) off, (off_t) len) == 0)
    return 0;
  if (fallocate (io->fd, FALLOC_FL_ZERO_RANGE, (off_t) off, (off_t) len) == 0) {
    io_note_end (io, off + len);
    return 0;
  }
  while (len > 0) {
    size_t n = len < sizeof zeroes ? (size_t) len : sizeof zeroes;
    int r = file_pwrite (io, zeroes, n, off);
    if (r < 0)
      return r;
    off += n;
    len -= n;
  }
  return 0;
}

static int
file_extent (struct io *io, uint64_t off, uint64_t len, bool *is_data,
             uint64_t *run)
{
  uint64_t end;
  int r = seek_run (io->fd, off, is_data, &end);

  if (r < 0)
    return set_image_error (io->name, -r, "SEEK_DATA/SEEK_HOLE: %s",
                            strerror (-r));
  *run = end - off < len ? end - off : len;
  return 0;
}

static int
file_allocated (struct io *io, uint64_t *bytes)
{
  struct stat st;

  if (fstat (io->fd, &st) < 0)
    return set_image_error (io->name, errno, "stat: %m");
  *bytes = (uint64_t) st.st_blocks * 512;
  return 0;
}

static void
file_close (struct io *io)
{
  /* Unflushed (an error path): nothing is durable anyway, but the file
   * is left as its writers know it. */
  if (io->fd >= 0)
    (void) cut_back (io);
  if (io->dfd >= 0)
    close (io->dfd);
  if (io->fd >= 0)
    close (io->fd);
}

static const struct io_ops file_ops = {
  .kind = "file",
  .pread = file_pread,
  .pwrite = file_pwrite,
  .flush = file_flush,
  .get_size = file_get_size,
  .truncate = file_truncate,
  .zero = file_zero,
  .extent = file_extent,
  .allocated = file_allocated,
  .close = file_close,
};

int
io_open_file (const char *path, unsigned flags, struct io **out)
{
  struct io *io;
  /* O_NONBLOCK so that a FIFO named by a hostile image cannot block the
   * open; it is cleared once fstat shows a regular file or device. */
  int oflags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  struct stat st;
  int fd;

  if (flags & IO_CREATE)
    oflags |= O_RDWR | O_CREAT | O_EXCL;
  else if (flags & IO_WRITE)
    oflags |= O_RDWR;
  else
    oflags |= O_RDONLY;

  fd = open (path, oflags, 0644);
  if (fd < 0)
    return set_image_error (path, errno, "%m");
  if (fstat (fd, &st) < 0) {
    int e = errno;
    close (fd);
    return set_image_error (path, e, "stat: %m");
  }
  /* A FIFO or a directory would block or fail in confusing ways later. */
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    close (fd);
    return set_image_error (path, EINVAL, "not a regular file or block device");
  }

  if (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK) < 0) {
    int e = errno;
    close (fd);
    return set_image_error (path, e, "fcntl: %m");
  }

  io = calloc (1, sizeof *io);
  if (io == NULL || (io->name = strdup (path)) == NULL) {
    free (io);
    close (fd);
    return set_error (ENOMEM, "out of memory");
  }
  io->ops = &file_ops;
  io->fd = fd;
  io->dfd = -1;
  io->writable = (flags & (IO_WRITE | IO_CREATE)) != 0;
  io->virgin = S_ISREG (st.st_mode) ? (uint64_t) st.st_size : UINT64_MAX;
  *out = io;
  return 0;
}

void
io_close (struct io *io)
{
  if (io == NULL)
    return;
  io->ops->close (io);
  free (io->name);
  free (io);
}

int
io_reopen_direct (int fd, int mode)
{
  char path[64];
  struct stat a, b;
  int dfd;

  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  dfd = open (path, mode | O_DIRECT | O_CLOEXEC);
  if (dfd < 0)
    return -1;
  if (fstat (fd, &a) < 0 || fstat (dfd, &b) < 0 || a.st_dev != b.st_dev
      || a.st_ino != b.st_ino) {
    close (dfd);
    return -1;
  }
  return dfd;
}

void
io_set_direct (struct io *io)
{
  if (io->fd >= 0 && io->dfd < 0)
    io->dfd = io_reopen_direct (io->fd, io->writable ? O_RDWR : O_RDONLY);
  io->dio_reads = true;
}

bool
io_set_direct_writes (struct io *io)
{
  if (io->fd >= 0 && io->dfd < 0 && io->writable)
    io->dfd = io_reopen_direct (io->fd, O_RDWR);
  return io->dfd >= 0 && io->writable;
}

void
io_willneed (struct io *io, uint64_t off, uint64_t len)
{
  if (io->fd >= 0 && off <= INT64_MAX && len <= INT64_MAX - off)
    (void) posix_fadvise (io->fd, (off_t) off, (off_t) len,
                          POSIX_FADV_WILLNEED);
}

int
io_fsync_dir (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r = 0;

  if (fd < 0 || fsync (fd) < 0)
    r = set_image_error (dir, errno, "fsync: %m");
  if (fd >= 0)
    close (fd);
  return r;
}
