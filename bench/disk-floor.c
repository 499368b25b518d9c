/* disk-floor: how fast this disk makes a copy's bytes durable, the floor under any tool that writes them. */
/*
 *   disk-floor --like OUT FILE
 *   disk-floor FILE BYTES
 *
 * With --like, FILE gets OUT's data runs (SEEK_DATA/SEEK_HOLE) at their
 * offsets: the same writes a copy that made OUT had to do, its holes
 * left out. Otherwise FILE gets BYTES from offset 0. FILE must not exist;
 * it is given its size with ftruncate (a sparse file, as qchain's raw
 * DESTs; here that measured faster than allocating ahead), written in
 * ascending order in O_DIRECT requests of at most 2 MiB, 8 in flight
 * through io_uring (a run's end rounded up to 4 KiB), and fdatasynced.
 * Nothing is read and one buffer serves every request, so no copy of
 * those bytes does less work: bench/run reports each copy against it.
 * The buffer is one huge page, as qchain's pool: 2 MiB direct writes
 * from small pages went slower here (a 1256 MiB raw layout: 1.00-1.16
 * against 0.86-0.96 s), the device taking them in more pieces.
 * Prints the seconds from FILE's open to the end of its sync. Exit 1 on
 * any error (a short write is one), 2 on a usage error.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define REQ (2u << 20)
#define DEPTH 8u
#define ALIGN 4096u

struct run {
  uint64_t off, len;
};

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int
fail (const char *file, const char *what, int err)
{
  fprintf (stderr, "disk-floor: %s: %s: %s\n", file, what, strerror (err));
  return 1;
}

/* Incompressible bytes, so that no layer below can shortcut them. */
static void
fill (uint64_t *p, size_t n)
{
  uint64_t x = 0x9e3779b97f4a7c15u;

  for (size_t i = 0; i < n / sizeof *p; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = x;
  }
}

static int
add_run (struct run **runs, size_t *n, size_t *cap, uint64_t off,
         uint64_t len)
{
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 1024;
    struct run *p = realloc (*runs, c * sizeof *p);

    if (!p)
      return -ENOMEM;
    *runs = p;
    *cap = c;
  }
  (*runs)[(*n)++] = (struct run) { off, len };
  return 0;
}

/* OUT's data runs and size. */
static int
runs_of (const char *out, struct run **runs, size_t *n, uint64_t *size)
{
  struct stat st;
  size_t cap = 0;
  off_t d, h = 0;
  int fd, r = 0;

  if ((fd = open (out, O_RDONLY | O_CLOEXEC)) < 0 || fstat (fd, &st) < 0)
    return fail (out, "open", errno);
  *size = (uint64_t) st.st_size;
  while (h < st.st_size) {
    if ((d = lseek (fd, h, SEEK_DATA)) < 0) {
      if (errno != ENXIO)
        r = fail (out, "SEEK_DATA", errno);
      break;
    }
    if ((h = lseek (fd, d, SEEK_HOLE)) < 0) {
      r = fail (out, "SEEK_HOLE", errno);
      break;
    }
    if (add_run (runs, n, &cap, (uint64_t) d, (uint64_t) (h - d)) < 0) {
      r = fail (out, "runs", ENOMEM);
      break;
    }
  }
  close (fd);
  return r;
}

static int
write_runs (const char *file, int fd, const struct run *runs, size_t n,
            const unsigned char *buf)
{
  struct io_uring ring;
  struct io_uring_cqe *cqe;
  unsigned inflight = 0;
  size_t i = 0;
  uint64_t done = 0;            /* of runs[i] */
  int r;

  if ((r = io_uring_queue_init (DEPTH, &ring, 0)) < 0)
    return fail (file, "io_uring_queue_init", -r);
  while (i < n || inflight > 0) {
    while (inflight < DEPTH && i < n) {
      struct io_uring_sqe *sqe = io_uring_get_sqe (&ring);
      uint64_t end = (runs[i].off + runs[i].len + ALIGN - 1) & ~(uint64_t) (ALIGN - 1);
      uint64_t off = (runs[i].off & ~(uint64_t) (ALIGN - 1)) + done;
      unsigned len = end - off < REQ ? (unsigned) (end - off) : REQ;

      if (!sqe)
        break;
      io_uring_prep_write (sqe, fd, buf, len, off);
      sqe->user_data = len;
      inflight++;
      done += len;
      if (off + len == end) {
        i++;
        done = 0;
      }
    }
    if ((r = io_uring_submit_and_wait (&ring, 1)) < 0)
      return fail (file, "io_uring_submit_and_wait", -r);
    while (io_uring_peek_cqe (&ring, &cqe) == 0) {
      if (cqe->res < 0)
        return fail (file, "write", -cqe->res);
      if ((uint64_t) cqe->res != cqe->user_data)
        return fail (file, "short write", EIO);
      io_uring_cqe_seen (&ring, cqe);
      inflight--;
    }
  }
  io_uring_queue_exit (&ring);
  return 0;
}

int
main (int argc, char **argv)
{
  struct run *runs = NULL;
  size_t n = 0;
  uint64_t size = 0;
  unsigned char *buf;
  const char *file;
  double t0;
  int fd, r;

  if (argc == 4 && strcmp (argv[1], "--like") == 0) {
    file = argv[3];
    if ((r = runs_of (argv[2], &runs, &n, &size)) != 0)
      return r;
  } else if (argc == 3) {
    char *end;

    file = argv[1];
    errno = 0;
    size = strtoull (argv[2], &end, 10);
    if (errno || *end || end == argv[2] || size > (UINT64_MAX >> 2)) {
      fprintf (stderr, "disk-floor: bad byte count: %s\n", argv[2]);
      return 2;
    }
    runs = malloc (sizeof *runs);
    if (!runs)
      return fail (file, "runs", ENOMEM);
    runs[0] = (struct run) { 0, size };
    n = size > 0;
  } else {
    fprintf (stderr, "usage: disk-floor --like OUT FILE | disk-floor FILE BYTES\n");
    return 2;
  }
  if (posix_memalign ((void **) &buf, REQ, REQ) != 0)
    return fail (file, "buffer", ENOMEM);
  (void) madvise (buf, REQ, MADV_HUGEPAGE);
  fill ((uint64_t *) buf, REQ);

  t0 = now ();
  fd = open (file, O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail (file, "open", errno);
  if (ftruncate (fd, (off_t) size) < 0)
    return fail (file, "ftruncate", errno);
  if ((r = write_runs (file, fd, runs, n, buf)) != 0)
    return r;
  if (fdatasync (fd) < 0)
    return fail (file, "fdatasync", errno);
  if (close (fd) < 0)
    return fail (file, "close", errno);
  printf ("%.4f\n", now () - t0);
  free (buf);
  free (runs);
  return 0;
}
