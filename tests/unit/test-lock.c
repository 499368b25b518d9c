/* Unit tests for image locking: which opens conflict, the bytes taken, release on close. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "qchain.h"
#include "errors.h"
#include "io.h"
#include "lock.h"

static char path[64];

static int
make_file (void **state)
{
  int fd;

  strcpy (path, "/tmp/qchain-test-lock-XXXXXX");
  fd = mkstemp (path);
  if (fd < 0)
    return -1;
  close (fd);
  return 0;
}

static int
remove_file (void **state)
{
  unlink (path);
  return 0;
}

static struct io *
open_locked (enum io_lock_mode mode, int want)
{
  struct io *io;

  assert_int_equal (io_open_file (path, mode == IO_LOCK_WRITE ? IO_WRITE : 0,
                                  &io), 0);
  clear_error ();
  assert_int_equal (io_lock (io, path, mode), want);
  if (want < 0) {
    assert_non_null (strstr (qc_get_error (), path));
    assert_non_null (strstr (qc_get_error (), "in use by another process"));
    io_close (io);
    return NULL;
  }
  return io;
}

/* The lock type another description sees on one byte: F_UNLCK if none. */
static int
seen (int byte)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };
  int fd = open (path, O_RDONLY);

  assert_true (fd >= 0);
  assert_int_equal (fcntl (fd, F_OFD_GETLK, &fl), 0);
  close (fd);
  return fl.l_type;
}

static void
read_and_read_share (void **state)
{
  struct io *a = open_locked (IO_LOCK_READ, 0);
  struct io *b = open_locked (IO_LOCK_READ, 0);

  io_close (a);
  io_close (b);
}

static void
read_then_write_conflicts (void **state)
{
  struct io *a = open_locked (IO_LOCK_READ, 0);

  open_locked (IO_LOCK_WRITE, -EAGAIN);
  io_close (a);
  io_close (open_locked (IO_LOCK_WRITE, 0));
}

static void
write_then_read_conflicts (void **state)
{
  struct io *a = open_locked (IO_LOCK_WRITE, 0);

  open_locked (IO_LOCK_READ, -EAGAIN);
  open_locked (IO_LOCK_WRITE, -EAGAIN);
  io_close (a);
  io_close (open_locked (IO_LOCK_READ, 0));
}

/* A refused open must not leave bytes behind that block later opens. */
static void
refused_open_holds_nothing (void **state)
{
  struct io *a = open_locked (IO_LOCK_READ, 0);
  struct io *b;
  int i;

  assert_int_equal (io_open_file (path, IO_WRITE, &b), 0);
  assert_int_equal (io_lock (b, path, IO_LOCK_WRITE), -EAGAIN);
  io_close (a);
  for (i = 100; i < 205; i++)
    assert_int_equal (seen (i), F_UNLCK);
  io_close (open_locked (IO_LOCK_WRITE, 0));
  io_close (b);
}

/* QEMU's bytes: 100 + perm held, 200 + perm not shared, perms consistent
 * read 0, write 1, write-unchanged 2, resize 3. */
static void
bytes_as_qemu (void **state)
{
  static const int read_bytes[] = { 100, 201, 203 };
  static const int write_bytes[] = { 100, 101, 103, 201, 203 };
  struct io *a;
  unsigned i, j;
  int b;

  for (i = 0; i < 2; i++) {
    const int *want = i ? write_bytes : read_bytes;
    unsigned n = i ? 5 : 3;

    a = open_locked (i ? IO_LOCK_WRITE : IO_LOCK_READ, 0);
    for (b = 95; b < 210; b++) {
      int held = 0;
      for (j = 0; j < n; j++)
        held |= want[j] == b;
      assert_int_equal (seen (b), held ? F_RDLCK : F_UNLCK);
    }
    io_close (a);
  }
}

static void
memory_io_is_not_locked (void **state)
{
  struct io *io;

  assert_int_equal (io_open_mem ("m", NULL, 0, &io), 0);
  assert_int_equal (io_lock (io, "m", IO_LOCK_WRITE), 0);
  io_close (io);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (read_and_read_share, make_file,
                                     remove_file),
    cmocka_unit_test_setup_teardown (read_then_write_conflicts, make_file,
                                     remove_file),
    cmocka_unit_test_setup_teardown (write_then_read_conflicts, make_file,
                                     remove_file),
    cmocka_unit_test_setup_teardown (refused_open_holds_nothing, make_file,
                                     remove_file),
    cmocka_unit_test_setup_teardown (bytes_as_qemu, make_file, remove_file),
    cmocka_unit_test (memory_io_is_not_locked),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
