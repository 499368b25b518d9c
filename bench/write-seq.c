/* write-seq: sequential write speed of a new qcow2 image through the
 * library, against a raw file written with the same bytes and chunking.
 *
 *   write-seq [--size-mib N] [--chunk-mib C] [--runs R] [--dir D]
 *             [--warmup W] [--keep-raw PATH] [--cluster-size N] [--quiet]
 *
 * Each run writes N MiB (default 1024) of incompressible data in C MiB
 * chunks (default 4): raw: open(O_CREAT) + pwrite + fdatasync + close;
 * qcow2: qcow2_format.create + open + pwrite + flush (which fsyncs) +
 * close. After W untimed warm-up pairs (default 1), runs alternate
 * raw / qcow2 (R of each, default 3), each on a
 * fresh file in D (default .); the medians and their ratio qcow2/raw are
 * printed, last line: "ratio R". --keep-raw leaves the raw file of the
 * last run at PATH (for the reference `qemu-img convert -O qcow2`). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "qchain.h"

#define POOL_MIB 64

static uint64_t size_mib = 1024, chunk_mib = 4, runs = 3, warmup = 1;
static uint32_t cluster_size;
static const char *dir = ".", *keep_raw;
static int quiet;
static unsigned char *pool;
static size_t chunk;

static void
die (const char *what)
{
  const char *m = qc_get_error ();

  fprintf (stderr, "write-seq: %s: %s\n", what, m ? m : strerror (errno));
  exit (1);
}

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Chunk i: a window of the random pool at an offset that varies with i. */
static const unsigned char *
chunk_data (uint64_t i)
{
  size_t span = (size_t) POOL_MIB << 20;
  size_t off = (size_t) ((i * 1048583u) % (span - chunk)) & ~(size_t) 4095;

  return pool + off;
}

static double
run_raw (const char *path)
{
  uint64_t total = size_mib << 20, off;
  double t0 = now ();
  int fd;

  unlink (path);
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    die (path);
  for (off = 0; off < total; off += chunk) {
    size_t n = total - off < chunk ? (size_t) (total - off) : chunk;
    const unsigned char *p = chunk_data (off / chunk);
    size_t done = 0;
    while (done < n) {
      ssize_t r = pwrite (fd, p + done, n - done, (off_t) (off + done));
      if (r <= 0)
        die ("pwrite");
      done += (size_t) r;
    }
  }
  if (fdatasync (fd) < 0)
    die ("fdatasync");
  close (fd);
  return now () - t0;
}

static double
run_qcow2 (const char *path)
{
  struct create_params p = { .size = size_mib << 20,
                             .cluster_size = cluster_size };
  uint64_t total = size_mib << 20, off;
  double t0 = now ();
  struct io *io;
  void *st;

  unlink (path);
  if (qcow2_format.create == NULL || qcow2_format.pwrite == NULL
      || qcow2_format.flush == NULL) {
    errno = ENOSYS;
    die ("the qcow2 driver has no create/pwrite/flush yet");
  }
  if (io_open_file (path, IO_CREATE | IO_WRITE, &io) < 0)
    die ("io_open_file");
  if (qcow2_format.create (io, &p) < 0)
    die ("create");
  if (qcow2_format.open (io, FMT_OPEN_WRITE, &st) < 0)
    die ("open");
  for (off = 0; off < total; off += chunk) {
    size_t n = total - off < chunk ? (size_t) (total - off) : chunk;
    if (qcow2_format.pwrite (st, chunk_data (off / chunk), n, off) < 0)
      die ("pwrite");
  }
  if (qcow2_format.flush (st) < 0)
    die ("flush");
  qcow2_format.close (st);
  io_close (io);
  return now () - t0;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return x < y ? -1 : x > y;
}

static double
median (double *v, uint64_t n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main (int argc, char **argv)
{
  static const struct option lo[] = {
    { "size-mib", required_argument, NULL, 's' },
    { "chunk-mib", required_argument, NULL, 'c' },
    { "runs", required_argument, NULL, 'r' },
    { "dir", required_argument, NULL, 'd' },
    { "keep-raw", required_argument, NULL, 'k' },
    { "cluster-size", required_argument, NULL, 'C' },
    { "quiet", no_argument, NULL, 'q' },
    { "warmup", required_argument, NULL, 'w' },
    { NULL, 0, NULL, 0 },
  };
  char *raw_path, *q_path;
  double *traw, *tq, mr, mq;
  uint64_t i, x = 0x9e3779b97f4a7c15ULL;
  int c;

  while ((c = getopt_long (argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 's': size_mib = strtoull (optarg, NULL, 0); break;
    case 'c': chunk_mib = strtoull (optarg, NULL, 0); break;
    case 'r': runs = strtoull (optarg, NULL, 0); break;
    case 'd': dir = optarg; break;
    case 'k': keep_raw = optarg; break;
    case 'C': cluster_size = (uint32_t) strtoul (optarg, NULL, 0); break;
    case 'q': quiet = 1; break;
    case 'w': warmup = strtoull (optarg, NULL, 0); break;
    default:
      fprintf (stderr, "usage: write-seq [--size-mib N] [--chunk-mib C] "
               "[--runs R] [--warmup W] [--dir D] [--keep-raw PATH] "
               "[--cluster-size N] [--quiet]\n");
      return 2;
    }
  }
  if (size_mib == 0 || chunk_mib == 0 || chunk_mib >= POOL_MIB || runs == 0) {
    fprintf (stderr, "write-seq: bad sizes\n");
    return 2;
  }
  chunk = (size_t) chunk_mib << 20;
  pool = malloc ((size_t) POOL_MIB << 20);
  traw = calloc (runs, sizeof *traw);
  tq = calloc (runs, sizeof *tq);
  if (!pool || !traw || !tq)
    die ("malloc");
  for (i = 0; i < ((uint64_t) POOL_MIB << 20) / 8; i++) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    memcpy (pool + 8 * i, &z, 8);
  }
  if (asprintf (&raw_path, "%s/write-seq.raw", dir) < 0
      || asprintf (&q_path, "%s/write-seq.qcow2", dir) < 0)
    die ("asprintf");

  for (i = 0; i < warmup; i++) {
    double a = run_raw (raw_path), b = run_qcow2 (q_path);
    if (!quiet)
      printf ("warm-up %" PRIu64 ": raw %.3f s, qcow2 %.3f s (not counted)\n",
              i + 1, a, b);
  }
  for (i = 0; i < runs; i++) {
    traw[i] = run_raw (raw_path);
    tq[i] = run_qcow2 (q_path);
    if (!quiet)
      printf ("run %" PRIu64 ": raw %.3f s (%.0f MiB/s), qcow2 %.3f s "
              "(%.0f MiB/s)\n", i + 1, traw[i], size_mib / traw[i], tq[i],
              size_mib / tq[i]);
    fflush (stdout);
  }
  unlink (q_path);
  if (keep_raw) {
    if (rename (raw_path, keep_raw) < 0)
      die (keep_raw);
  }
  else
    unlink (raw_path);
  mr = median (traw, runs);
  mq = median (tq, runs);
  printf ("median over %" PRIu64 " runs of %" PRIu64 " MiB in %" PRIu64
          " MiB chunks: raw %.3f s (%.0f MiB/s), qcow2 %.3f s (%.0f MiB/s)\n",
          runs, size_mib, chunk_mib, mr, size_mib / mr, mq, size_mib / mq);
  printf ("ratio %.3f\n", mq / mr);
  free (raw_path);
  free (q_path);
  free (traw);
  free (tq);
  free (pool);
  return 0;
}
