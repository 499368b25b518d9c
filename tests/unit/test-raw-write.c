/* Unit tests for the raw writer: writes, zeroes as holes, growing, refusals. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "qchain.h"
#include "format.h"
#include "io.h"

#define MiB (1024u * 1024)

struct raw {
  char dir[64];
  char path[128];
  struct io *io;
  void *st;
};

static void
mk (struct raw *r, uint64_t size)
{
  struct create_params p = { .size = size };

  strcpy (r->dir, "/var/tmp/qchain-raw-XXXXXX");
  assert_non_null (mkdtemp (r->dir));
  snprintf (r->path, sizeof r->path, "%s/img.raw", r->dir);
  assert_int_equal (io_open_file (r->path, IO_CREATE, &r->io), 0);
  assert_int_equal (raw_format.create (r->io, &p), 0);
  assert_int_equal (raw_format.open (r->io, FMT_OPEN_WRITE, &r->st), 0);
}

static void
done (struct raw *r)
{
  raw_format.close (r->st);
  io_close (r->io);
  unlink (r->path);
  rmdir (r->dir);
}

static uint64_t
allocated (struct raw *r)
{
  struct stat st;

  assert_int_equal (stat (r->path, &st), 0);
  return (uint64_t) st.st_blocks * 512;
}

static void
create_is_sparse_and_sized (void **state)
{
  struct qc_info in = { .struct_size = sizeof in };
  struct raw r;

  mk (&r, 64 * MiB);
  raw_format.describe (r.st, &in);
  assert_int_equal (in.virtual_size, 64 * MiB);
  assert_true (allocated (&r) < MiB);
  done (&r);
}

static void
write_then_zero_punches_a_hole (void **state)
{
  static unsigned char buf[MiB], back[MiB];
  struct layer_extent e;
  struct raw r;

  mk (&r, 8 * MiB);
  memset (buf, 0xab, sizeof buf);
  assert_int_equal (raw_format.pwrite (r.st, buf, sizeof buf, 2 * MiB), 0);
  assert_int_equal (raw_format.flush (r.st), 0);
  assert_true (allocated (&r) >= MiB);
  assert_int_equal (raw_format.zero (r.st, 2 * MiB, MiB), 0);
  assert_int_equal (raw_format.read (r.st, back, sizeof back, 2 * MiB), 0);
  memset (buf, 0, sizeof buf);
  assert_memory_equal (back, buf, sizeof back);
  assert_int_equal (raw_format.status (r.st, 2 * MiB, MiB, &e), 0);
  assert_int_equal (e.type, EXT_ZERO);          /* a hole, not zero bytes */
  assert_true (allocated (&r) < MiB);
  done (&r);
}

static void
partial_zero_keeps_neighbours (void **state)
{
  unsigned char buf[8192], back[8192];
  struct raw r;

  mk (&r, MiB);
  memset (buf, 0x5a, sizeof buf);
  assert_int_equal (raw_format.pwrite (r.st, buf, sizeof buf, 0), 0);
  assert_int_equal (raw_format.discard (r.st, 100, 1000), 0);
  memset (buf + 100, 0, 1000);
  assert_int_equal (raw_format.read (r.st, back, sizeof back, 0), 0);
  assert_memory_equal (back, buf, sizeof back);
  done (&r);
}

static void
resize_grows_and_never_shrinks (void **state)
{
  struct qc_info in = { .struct_size = sizeof in };
  unsigned char b = 1;
  struct raw r;

  mk (&r, MiB);
  assert_true (raw_format.pwrite (r.st, &b, 1, MiB) < 0);   /* past the end */
  assert_int_equal (raw_format.resize (r.st, 3 * MiB), 0);
  assert_int_equal (raw_format.pwrite (r.st, &b, 1, MiB), 0);
  raw_format.describe (r.st, &in);
  assert_int_equal (in.virtual_size, 3 * MiB);
  assert_true (raw_format.resize (r.st, MiB) < 0);
  assert_non_null (strstr (qc_get_error (), "shrink"));
  done (&r);
}

static void
no_backing_and_nothing_to_check (void **state)
{
  struct qc_check_result res = { .struct_size = sizeof res };
  struct create_params p = { .size = MiB, .backing = "base.qcow2" };
  struct raw r;
  struct io *io;

  mk (&r, MiB);
  assert_int_equal (raw_format.set_backing (r.st, NULL, NULL), 0);
  assert_true (raw_format.set_backing (r.st, "base.qcow2", "qcow2") < 0);
  assert_int_equal (raw_format.check (r.st, 0, &res, NULL, NULL), -ENOTSUP);
  assert_int_equal (io_open_mem ("m", NULL, 0, &io), 0);
  assert_true (raw_format.create (io, &p) < 0);
  assert_non_null (strstr (qc_get_error (), "backing"));
  io_close (io);
  done (&r);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (create_is_sparse_and_sized),
    cmocka_unit_test (write_then_zero_punches_a_hole),
    cmocka_unit_test (partial_zero_keeps_neighbours),
    cmocka_unit_test (resize_grows_and_never_shrinks),
    cmocka_unit_test (no_backing_and_nothing_to_check),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
