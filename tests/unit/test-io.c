/* Unit tests for the I/O backends: file and memory, EOF semantics, extents, crash limit. */
#include <config.h>

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (mem_reads_zero_past_eof),
    cmocka_unit_test (mem_write_grows),
    cmocka_unit_test (mem_write_limit_drops_later_writes),
    cmocka_unit_test (mem_write_overflow_refused),
    cmocka_unit_test (file_extents_see_holes),
    cmocka_unit_test (file_open_missing_names_path),
    cmocka_unit_test (file_direct_aligned_requests),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
