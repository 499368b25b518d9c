/* Unit tests for the I/O backends: file and memory, EOF semantics, extents, crash limit. */
#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "io.h"

static char tmpl[] = "/tmp/qchain-test-io-XXXXXX";

static void
mem_reads_zero_past_eof (void **state)
{
  struct io *io;
  char buf[8];

  assert_int_equal (io_open_mem ("m", "abcd", 4, &io), 0);
  memset (buf, 'x', sizeof buf);
  assert_int_equal (io_pread (io, buf, 8, 2), 0);
  assert_memory_equal (buf, "cd\0\0\0\0\0\0", 8);
  io_close (io);
}

static void
mem_write_grows (void **state)
{
  struct io *io;
  uint64_t size;
  size_t len;

  assert_int_equal (io_open_mem ("m", NULL, 0, &io), 0);
  assert_int_equal (io_pwrite (io, "xy", 2, 10000), 0);
  assert_int_equal (io_get_size (io, &size), 0);
  assert_int_equal (size, 10002);
  assert_memory_equal (io_mem_data (io, &len) + 10000, "xy", 2);
  io_close (io);
}

static void
mem_write_limit_drops_later_writes (void **state)
{
  struct io *io;
  char buf[3];

  assert_int_equal (io_open_mem ("m", "000", 3, &io), 0);
  io_mem_set_write_limit (io, 2);
  assert_int_equal (io_pwrite (io, "1", 1, 0), 0);
  assert_int_equal (io_pwrite (io, "2", 1, 1), 0);
  assert_int_equal (io_pwrite (io, "3", 1, 2), 0);    /* "after the crash" */
  assert_int_equal (io_mem_writes (io), 3);
  assert_int_equal (io_pread (io, buf, 3, 0), 0);
  assert_memory_equal (buf, "120", 3);
  io_close (io);
}

static void
mem_write_overflow_refused (void **state)
{
  struct io *io;

  assert_int_equal (io_open_mem ("m", NULL, 0, &io), 0);
  assert_true (io_pwrite (io, "x", 1, UINT64_MAX) < 0);
  io_close (io);
}

static void
file_extents_see_holes (void **state)
{
  char *dir = mkdtemp (tmpl);
  char path[256];
  struct io *io;
  bool is_data;
  uint64_t run;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  assert_int_equal (io_open_file (path, IO_CREATE, &io), 0);
  /* data at 0..4K, hole up to 1M, data at 1M..1M+4K */
  assert_int_equal (io_pwrite (io, "data", 4, 0), 0);
  assert_int_equal (io_pwrite (io, "data", 4, 1 << 20), 0);
  assert_int_equal (io_extent (io, 0, 2 << 20, &is_data, &run), 0);
  assert_true (is_data);
  assert_true (run >= 4 && run < (1 << 20));
  assert_int_equal (io_extent (io, 512 << 10, 2 << 20, &is_data, &run), 0);
  if (is_data)          /* a filesystem without holes reports all data */
    skip ();
  assert_int_equal (run, (1 << 20) - (512 << 10));
  /* past EOF: a hole to the end of the request */
  assert_int_equal (io_extent (io, 4 << 20, 4096, &is_data, &run), 0);
  assert_false (is_data);
  assert_int_equal (run, 4096);
  io_close (io);
  unlink (path);
  rmdir (dir);
}

/* Pages of [off, off+len) of path in the page cache. */
static size_t
cached_pages (const char *path, size_t off, size_t len)
{
  long pg = sysconf (_SC_PAGESIZE);
  unsigned char vec[1024];
  size_t i, n = 0;
  int fd = open (path, O_RDONLY);
  void *p;

  assert_true (fd >= 0 && len / pg <= sizeof vec);
  p = mmap (NULL, len, PROT_READ, MAP_SHARED, fd, (off_t) off);
  assert_true (p != MAP_FAILED);
  assert_int_equal (mincore (p, len, vec), 0);
  for (i = 0; i < len / pg; i++)
    n += vec[i] & 1;
  munmap (p, len);
  close (fd);
  return n;
}

/* A read-only file's holes read as zeroes without being read: no page
 * cache is filled with zeroes for them (it costs as much as a disk read
 * where the host takes back free memory); data on both sides is read. */
static void
file_read_skips_holes (void **state)
{
  char dtmpl[] = "/tmp/qchain-test-io-holes-XXXXXX";
  char *dir = mkdtemp (dtmpl);
  static char buf[(1 << 20) + 8192];
  char path[256];
  struct io *io;
  bool is_data;
  uint64_t run;
  size_t i;
  int fd;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  assert_int_equal (io_open_file (path, IO_CREATE, &io), 0);
  memset (buf, 'a', 8192);
  assert_int_equal (io_pwrite (io, buf, 8192, 0), 0);
  assert_int_equal (io_pwrite (io, buf, 8192, 1 << 20), 0);
  assert_int_equal (io->ops->flush (io), 0);
  assert_int_equal (io_extent (io, 64 << 10, 4096, &is_data, &run), 0);
  io_close (io);
  if (is_data)          /* a filesystem without holes reports all data */
    skip ();
  /* Nothing of the file cached: what a read caches is what it read. */
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  close (fd);

  assert_int_equal (io_open_file (path, 0, &io), 0);
  memset (buf, 'x', sizeof buf);
  assert_int_equal (io_pread (io, buf, sizeof buf, 4096), 0);
  for (i = 0; i < sizeof buf; i++) {
    char want = i < 4096 || i >= (1 << 20) - 4096 ? 'a' : 0;
    if (i >= (1 << 20) + 4096)
      want = 0;                  /* past EOF */
    if (buf[i] != want)
      fail_msg ("byte %zu is %d, not %d", i, buf[i], want);
  }
  assert_int_equal (cached_pages (path, 64 << 10, 512 << 10), 0);
  /* The same hole again (the answer is remembered), then data before it. */
  assert_int_equal (io_pread (io, buf, 4096, 256 << 10), 0);
  assert_true (buf[0] == 0 && buf[4095] == 0);
  assert_int_equal (io_pread (io, buf, 4096, 0), 0);
  assert_true (buf[0] == 'a' && buf[4095] == 'a');
  io_close (io);
  unlink (path);
  rmdir (dir);
}

/* io_data_run on a read-only file of 4 KiB of data every 64 KiB, NDATA
 * times, LEAD bytes into each 64 KiB (0: the file starts with data), the
 * file cut TAIL bytes past its last data (0: it ends with data), answers
 * as SEEK_DATA/SEEK_HOLE do, at every 4 KiB, forwards and backwards, and
 * past the end. */
static void
check_data_runs (uint64_t ndata, uint64_t lead, uint64_t tail)
{
  char dtmpl[] = "/tmp/qchain-test-io-runs-XXXXXX";
  char *dir = mkdtemp (dtmpl);
  static char buf[4096];
  char path[256];
  const uint64_t step = 64 << 10;
  const uint64_t size = (ndata - 1) * step + lead + 4096 + tail;
  uint64_t off, k;
  struct io *io;
  int fd, pass;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  fd = open (path, O_RDWR | O_CREAT | O_EXCL, 0600);
  assert_true (fd >= 0);
  memset (buf, 'r', sizeof buf);
  for (off = 0; off < ndata * step; off += step)
    assert_int_equal (pwrite (fd, buf, 4096, (off_t) (off + lead)), 4096);
  assert_int_equal (ftruncate (fd, (off_t) size), 0);
  assert_int_equal (fsync (fd), 0);
  if (lseek (fd, 0, SEEK_HOLE) != (off_t) (lead ? 0 : 4096)) {  /* no holes */
    close (fd);
    unlink (path);
    rmdir (dir);
    skip ();
  }
  assert_int_equal (io_open_file (path, 0, &io), 0);
  for (pass = 0; pass < 2; pass++)
    for (k = 0; k <= size / 4096 + 4; k++) {
      uint64_t o = (pass ? size / 4096 + 4 - k : k) * 4096, want_end, got;
      off_t d = lseek (fd, (off_t) o, SEEK_DATA);
      bool want_data, is_data;

      if (d < 0) {
        want_data = false;                        /* past the last data */
        want_end = UINT64_MAX;
      }
      else if ((uint64_t) d > o) {
        want_data = false;
        want_end = (uint64_t) d;
      }
      else {
        want_data = true;
        want_end = (uint64_t) lseek (fd, (off_t) o, SEEK_HOLE);
      }
      got = io_data_run (io, o, 1 << 20, &is_data);
      if (is_data != want_data
          || got != (want_end - o < (1 << 20) ? want_end - o : 1 << 20))
        fail_msg ("at %" PRIu64 ": %s for %" PRIu64 ", not %s to %" PRIu64,
                  o, is_data ? "data" : "hole", got,
                  want_data ? "data" : "hole", want_end);
    }
  io_close (io);
  close (fd);
  unlink (path);
  rmdir (dir);
}

/* More runs than the first look keeps (301, 299, 66: a hole in its last
 * slot) and fewer (21, 19: it reaches the end, in a hole or in data). */
static void
file_data_runs_match_seek (void **state)
{
  (void) state;
  check_data_runs (150, 8192, 60 << 10);
  check_data_runs (150, 0, 0);
  check_data_runs (33, 0, 60 << 10);
  check_data_runs (10, 8192, 60 << 10);
  check_data_runs (10, 0, 0);
}

/* A writable file's reads do not trust an earlier answer: what was
 * written into a hole reads back. */
static void
file_read_writable_sees_new_data (void **state)
{
  char dtmpl[] = "/tmp/qchain-test-io-wr-XXXXXX";
  char *dir = mkdtemp (dtmpl);
  char path[256], buf[4096];
  struct io *io;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  assert_int_equal (io_open_file (path, IO_CREATE, &io), 0);
  assert_int_equal (io_pwrite (io, "d", 1, 1 << 20), 0);
  assert_int_equal (io_pread (io, buf, 4096, 64 << 10), 0);
  assert_int_equal (buf[0], 0);
  assert_int_equal (io_pwrite (io, "new", 3, 64 << 10), 0);
  assert_int_equal (io_pread (io, buf, 4096, 64 << 10), 0);
  assert_memory_equal (buf, "new", 3);
  io_close (io);
  unlink (path);
  rmdir (dir);
}

static void
file_open_missing_names_path (void **state)
{
  struct io *io;

  assert_true (io_open_file ("/nonexistent/qchain/x.qcow2", 0, &io) < 0);
}

/* O_DIRECT for aligned requests, buffered for the rest, one file view:
 * what one path wrote the other reads, and a direct read past EOF comes
 * back zero-filled. In the build directory: /tmp may refuse O_DIRECT. */
static void
file_direct_aligned_requests (void **state)
{
  char dtmpl[] = "qchain-test-io-direct-XXXXXX";
  char *dir = mkdtemp (dtmpl);
  char path[256];
  unsigned char *a = NULL, *b = NULL;
  struct io *io;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  assert_int_equal (io_open_file (path, IO_CREATE, &io), 0);
  assert_int_equal (io->dfd, -1);
  io_set_direct (io);
  if (io->dfd < 0) {
    io_close (io);
    unlink (path);
    rmdir (dir);
    skip ();
  }
  assert_true (fcntl (io->dfd, F_GETFL) & O_DIRECT);
  assert_int_equal (posix_memalign ((void **) &a, IO_DIO_ALIGN, 3 * 4096), 0);
  assert_int_equal (posix_memalign ((void **) &b, IO_DIO_ALIGN, 3 * 4096), 0);
  memset (a, 0xab, 3 * 4096);
  assert_int_equal (io_pwrite (io, a, 3 * 4096, 0), 0);      /* direct */
  assert_int_equal (io_pwrite (io, "hello", 5, 4099), 0);    /* buffered */
  assert_int_equal (io_pread (io, b, 3 * 4096, 0), 0);       /* direct */
  memcpy (a + 4099, "hello", 5);
  assert_memory_equal (a, b, 3 * 4096);
  /* 8 KiB from 8 KiB: 4 KiB of file, then zeroes */
  memset (b, 1, 3 * 4096);
  assert_int_equal (io_pread (io, b, 2 * 4096, 2 * 4096), 0);
  assert_memory_equal (b, a + 2 * 4096, 4096);
  for (size_t i = 4096; i < 2 * 4096; i++)
    assert_int_equal (b[i], 0);
  free (a);
  free (b);
  io_close (io);
  unlink (path);
  rmdir (dir);
}

static uint64_t
file_size (int fd)
{
  struct stat st;

  assert_int_equal (fstat (fd, &st), 0);
  return (uint64_t) st.st_size;
}

/* Direct writes grow the file ahead (so they are not writes past its
 * end); io_get_size, a flush and a close all go by the end its writers
 * know, buffered writes, zeroes and truncates included. */
static void
file_direct_writes_grow_ahead (void **state)
{
  char dtmpl[] = "qchain-test-io-grow-XXXXXX";
  char *dir = mkdtemp (dtmpl);
  char path[256], buf[8];
  unsigned char *a = NULL;
  struct io *io;
  uint64_t size;
  int fd;

  assert_non_null (dir);
  snprintf (path, sizeof path, "%s/f", dir);
  assert_int_equal (io_open_file (path, IO_CREATE, &io), 0);
  if (!io_set_direct_writes (io)) {
    io_close (io);
    unlink (path);
    rmdir (dir);
    skip ();
  }
  assert_false (io->dio_reads);
  assert_int_equal (posix_memalign ((void **) &a, IO_DIO_ALIGN, 4096), 0);
  memset (a, 0xcd, 4096);
  assert_int_equal (io_pwrite (io, a, 4096, 0), 0);          /* direct */
  assert_true (file_size (io->fd) >= (8u << 20));             /* grown */
  assert_int_equal (io_get_size (io, &size), 0);
  assert_int_equal (size, 4096);
  assert_int_equal (io_pwrite (io, "xy", 2, 10000), 0);      /* buffered */
  assert_int_equal (io_get_size (io, &size), 0);
  assert_int_equal (size, 10002);
  assert_int_equal (io->ops->flush (io), 0);
  assert_int_equal (file_size (io->fd), 10002);               /* cut back */
  assert_int_equal (io_pread (io, buf, 2, 10000), 0);
  assert_memory_equal (buf, "xy", 2);
  /* Noted by a writer outside io (an engine request, say). */
  io_dio_reserve (io, (1u << 20) + 4096);
  assert_int_equal (pwrite (io->dfd, a, 4096, 1u << 20), 4096);
  assert_true (file_size (io->fd) > (1u << 20) + 4096);
  io_note_end (io, (3u << 20) + 1);
  assert_int_equal (io->ops->zero (io, 3u << 20, 4096), 0);  /* no extension */
  assert_int_equal (io->ops->flush (io), 0);
  assert_int_equal (file_size (io->fd), (3u << 20) + 1);
  /* A truncate is the new end. */
  assert_int_equal (io_pwrite (io, a, 4096, 4u << 20), 0);
  assert_int_equal (io->ops->truncate (io, 5000), 0);
  assert_int_equal (io->ops->flush (io), 0);
  assert_int_equal (file_size (io->fd), 5000);
  /* Once the file system refused a direct write, writes go buffered. */
  assert_int_equal (io_write_fd (io, a, 4096, 0), io->dfd);
  io_direct_refused (io);
  assert_int_equal (io_write_fd (io, a, 4096, 0), io->fd);
  io->dio_refused = false;
  /* Closed unflushed (an error path): cut back all the same. */
  assert_int_equal (io_pwrite (io, a, 4096, 8192), 0);
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  assert_true (file_size (fd) > 8192 + 4096);
  io_close (io);
  assert_int_equal (file_size (fd), 8192 + 4096);
  close (fd);
  free (a);
  unlink (path);
  rmdir (dir);
}

/* Where a file was never written: its size at open, then past every
 * write through io (or noted); a device's old bytes are never virgin.
 * io_extend grows a file to an end only. */
static void
file_virgin_follows_writes (void **state)
{
  char path[] = "/tmp/qchain-test-io-virgin-XXXXXX";
  int fd = mkstemp (path);
  struct io *io;
  struct stat st;

  assert_true (fd >= 0);
  assert_int_equal (pwrite (fd, "abcd", 4, 8192), 4);
  assert_int_equal (io_open_file (path, IO_WRITE, &io), 0);
  assert_int_equal (io->virgin, 8196);
  assert_int_equal (io_pwrite (io, "x", 1, 100), 0);
  assert_int_equal (io->virgin, 8196);
  assert_int_equal (io_pwrite (io, "xy", 2, 20000), 0);
  assert_int_equal (io->virgin, 20002);
  (void) io_write_fd (io, "z", 1, 30000);     /* an engine request's fd */
  assert_int_equal (io->virgin, 30001);
  io_note_written (io, 40000);
  assert_int_equal (io->virgin, 40000);
  assert_int_equal (io_extend (io, 65536), 0);
  assert_int_equal (fstat (fd, &st), 0);
  assert_int_equal (st.st_size, 65536);
  assert_int_equal (io_extend (io, 4096), 0);   /* never shrinks */
  assert_int_equal (fstat (fd, &st), 0);
  assert_int_equal (st.st_size, 65536);
  io_close (io);
  assert_int_equal (io_open_mem ("m", "abc", 3, &io), 0);
  assert_int_equal (io->virgin, 3);
  io_close (io);
  close (fd);
  unlink (path);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (mem_reads_zero_past_eof),
    cmocka_unit_test (mem_write_grows),
    cmocka_unit_test (mem_write_limit_drops_later_writes),
    cmocka_unit_test (mem_write_overflow_refused),
    cmocka_unit_test (file_extents_see_holes),
    cmocka_unit_test (file_read_skips_holes),
    cmocka_unit_test (file_data_runs_match_seek),
    cmocka_unit_test (file_read_writable_sees_new_data),
    cmocka_unit_test (file_open_missing_names_path),
    cmocka_unit_test (file_direct_aligned_requests),
    cmocka_unit_test (file_direct_writes_grow_ahead),
    cmocka_unit_test (file_virgin_follows_writes),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
