/* Unit tests for qcow2 create and check: a matrix of new images checks clean; damaged ones give qemu-img's counts; repair. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "byte-order.h"
#include "errors.h"
#include "qchain.h"
#include "qcow2.h"

#define NAME "t.qcow2"
#define VSIZE (64ull << 20)

struct img {
  struct io *io;
  uint32_t cs;
  unsigned order;
  bool ext;
  uint64_t l1, rt;
  uint64_t l2, d0, d1, spare;    /* clusters added by add_data */
};

static struct io *
create (const struct create_params *p)
{
  struct io *io;

  assert_int_equal (io_open_mem (NAME, NULL, 0, &io), 0);
  assert_int_equal (qcow2_create_op (io, p), 0);
  return io;
}

static int
check (struct io *io, unsigned flags, struct qc_check_result *res)
{
  unsigned of = flags ? FMT_OPEN_WRITE | FMT_OPEN_REPAIR : 0;
  void *st;
  int r;

  int saved = -1, null;

  memset (res, 0, sizeof *res);
  res->struct_size = sizeof *res;
  assert_int_equal (qcow2_format.open (io, of, &st), 0);
  /* The findings the check prints are expected here. */
  if (getenv ("QCHAIN_TEST_VERBOSE") == NULL)
    {
      fflush (stderr);
      saved = dup (2);
      null = open ("/dev/null", O_WRONLY);
      dup2 (null, 2);
      close (null);
    }
  r = qcow2_check_op (st, flags, res, NULL, NULL);
  if (r == 0 && flags)
    r = qcow2_format.flush (st);
  if (saved >= 0)
    {
      fflush (stderr);
      dup2 (saved, 2);
      close (saved);
    }
  qcow2_format.close (st);
  return r;
}

static void
assert_clean (struct io *io, uint64_t total)
{
  struct qc_check_result res;

  assert_int_equal (check (io, 0, &res), 0);
  assert_int_equal (res.corruptions, 0);
  assert_int_equal (res.leaks, 0);
  assert_int_equal (res.check_errors, 0);
  assert_int_equal (res.total_clusters, total);
}

/* ---- raw access to the image in memory ---- */

static uint64_t
rd64 (struct io *io, uint64_t off)
{
  unsigned char b[8];

  assert_int_equal (io_pread (io, b, 8, off), 0);
  return get_be64 (b);
}

static void
wr64 (struct io *io, uint64_t off, uint64_t v)
{
  unsigned char b[8];

  put_be64 (b, v);
  assert_int_equal (io_pwrite (io, b, 8, off), 0);
}

static void
set_rc (struct img *t, uint64_t cluster, uint64_t v)
{
  uint64_t per = (uint64_t) t->cs * 8 >> t->order;
  uint64_t rb = rd64 (t->io, t->rt + 8 * (cluster / per));
  uint64_t i = cluster % per, bits = 1ull << t->order;
  unsigned char b[8];

  assert_true (rb != 0);
  if (bits >= 8)
    {
      size_t w = bits / 8, k;
      for (k = 0; k < w; k++)
        b[k] = (unsigned char) (v >> (8 * (w - 1 - k)));
      assert_int_equal (io_pwrite (t->io, b, w, rb + i * w), 0);
      return;
    }
  assert_int_equal (io_pread (t->io, b, 1, rb + i * bits / 8), 0);
  b[0] &= (unsigned char) ~(((1u << bits) - 1) << (i * bits % 8));
  b[0] |= (unsigned char) (v << (i * bits % 8));
  assert_int_equal (io_pwrite (t->io, b, 1, rb + i * bits / 8), 0);
}

/* Append an L2 table mapping guest clusters 0 and 1 to two data clusters,
 * and a spare cluster, all with refcount 1; the spare is referenced by
 * nothing until a test says so (so it starts as a leak: set it to 0). */
static void
add_data (struct img *t, const struct create_params *p)
{
  uint64_t size, c, esz;
  unsigned char *z;

  t->io = create (p);
  t->cs = p->cluster_size;
  t->order = (unsigned) __builtin_ctz (p->refcount_bits);
  t->ext = p->extended_l2;
  t->l1 = rd64 (t->io, 40);
  t->rt = rd64 (t->io, 48);
  assert_int_equal (io_get_size (t->io, &size), 0);
  c = (size + t->cs - 1) / t->cs;
  t->l2 = c * t->cs;
  t->d0 = (c + 1) * t->cs;
  t->d1 = (c + 2) * t->cs;
  t->spare = (c + 3) * t->cs;
  z = calloc (4, t->cs);
  assert_non_null (z);
  assert_int_equal (io_pwrite (t->io, z, 4 * (size_t) t->cs, t->l2), 0);
  free (z);
  esz = t->ext ? 16 : 8;
  wr64 (t->io, t->l1, t->l2 | QCOW2_OFLAG_COPIED);
  wr64 (t->io, t->l2, t->d0 | QCOW2_OFLAG_COPIED);
  wr64 (t->io, t->l2 + esz, t->d1 | QCOW2_OFLAG_COPIED);
  if (t->ext)
    {
      wr64 (t->io, t->l2 + 8, 0xffffffffull);
      wr64 (t->io, t->l2 + esz + 8, 0xffffffffull);
    }
  for (c = t->l2 / t->cs; c <= t->spare / t->cs; c++)
    set_rc (t, c, c == t->spare / t->cs ? 0 : 1);
}

/* ---- the matrix ---- */

struct variant {
  uint32_t version, cs, rb;
  bool ext, zstd;
};

static const struct variant variants[] = {
  { 2, 512, 16, false, false },
  { 2, 65536, 16, false, false },
  { 2, 2u << 20, 16, false, false },
  { 3, 512, 1, false, false },
  { 3, 512, 16, false, false },
  { 3, 512, 64, false, false },
  { 3, 65536, 1, false, false },
  { 3, 65536, 16, false, true },
  { 3, 65536, 64, true, false },
  { 3, 16384, 2, true, true },
  { 3, 2u << 20, 1, true, false },
  { 3, 2u << 20, 16, false, false },
  { 3, 2u << 20, 64, false, true },
};
#define NB_VARIANTS (sizeof variants / sizeof variants[0])

static struct create_params
params (const struct variant *v)
{
  struct create_params p = {
    .size = VSIZE, .version = v->version, .cluster_size = v->cs,
    .refcount_bits = v->rb, .extended_l2 = v->ext, .zstd = v->zstd,
  };
  return p;
}

static void
test_create_matrix (void **state)
{
  size_t i;

  (void) state;
  for (i = 0; i < NB_VARIANTS; i++)
    {
      struct create_params p = params (&variants[i]);
      struct qcow2_header h;
      const unsigned char *d;
      struct io *io = create (&p);
      size_t len;

      d = io_mem_data (io, &len);
      qcow2_header_decode (d, len, &h);
      assert_int_equal (h.version, p.version);
      assert_int_equal (1u << h.cluster_bits, p.cluster_size);
      assert_int_equal (1u << h.refcount_order, p.refcount_bits);
      assert_int_equal (!!(h.incompatible_features & QCOW2_INCOMPAT_EXTL2),
                        p.extended_l2);
      assert_int_equal (h.compression_type, p.zstd);
      assert_clean (io, VSIZE / p.cluster_size);
      io_close (io);
    }
}

static void
test_create_defaults_and_backing (void **state)
{
  struct create_params p = { .size = 1000, .backing = "base.qcow2",
                             .backing_format = "qcow2", .lazy_refcounts = true };
  struct io *io = create (&p);
  struct qcow2_header h;
  const unsigned char *d;
  size_t len;

  (void) state;
  d = io_mem_data (io, &len);
  qcow2_header_decode (d, len, &h);
  assert_int_equal (h.version, 3);
  assert_int_equal (h.cluster_bits, 16);
  assert_int_equal (h.refcount_order, 4);
  assert_int_equal (h.size, 1024);             /* rounded to sectors */
  assert_int_equal (h.header_length, 112);
  assert_int_equal (h.compatible_features, QCOW2_COMPAT_LAZY_REFCOUNTS);
  assert_int_equal (h.backing_file_size, 10);
  assert_memory_equal (d + h.backing_file_offset, "base.qcow2", 10);
  assert_clean (io, 1);
  io_close (io);
}

static void
expect_create_error (const struct create_params *p, int err)
{
  struct io *io;

  assert_int_equal (io_open_mem (NAME, NULL, 0, &io), 0);
  assert_int_equal (qcow2_create_op (io, p), -err);
  io_close (io);
}

static void
test_create_errors (void **state)
{
  char name[1100];
  struct create_params p;

  (void) state;
#define BAD(err, ...) do { \
    struct create_params q = { .size = VSIZE, __VA_ARGS__ }; \
    expect_create_error (&q, err); } while (0)
  BAD (EINVAL, .cluster_size = 256);
  BAD (EINVAL, .cluster_size = 4u << 20);
  BAD (EINVAL, .cluster_size = 3000);
  BAD (EINVAL, .refcount_bits = 3);
  BAD (EINVAL, .refcount_bits = 128);
  BAD (EINVAL, .version = 4);
  BAD (EINVAL, .version = 2, .refcount_bits = 8);
  BAD (EINVAL, .version = 2, .extended_l2 = true);
  BAD (EINVAL, .version = 2, .lazy_refcounts = true);
  BAD (EINVAL, .version = 2, .zstd = true);
  BAD (EINVAL, .extended_l2 = true, .cluster_size = 8192);
  BAD (EINVAL, .backing_format = "raw");
#undef BAD
  p = (struct create_params) { .size = 200ull << 30, .cluster_size = 512 };
  expect_create_error (&p, EFBIG);
  memset (name, 'b', sizeof name);
  name[1024] = '\0';
  p = (struct create_params) { .size = VSIZE, .backing = name };
  expect_create_error (&p, EINVAL);
  name[400] = '\0';
  p = (struct create_params) { .size = VSIZE, .backing = name,
                               .cluster_size = 512 };
  expect_create_error (&p, ENOSPC);
}

/* ---- damage ---- */

struct counts {
  uint64_t corruptions, leaks;
};

typedef void damage_fn (struct img *t);

static void
run_damage (damage_fn *fn, struct counts want, bool skip_512)
{
  size_t i;

  for (i = 0; i < NB_VARIANTS; i++)
    {
      struct create_params p = params (&variants[i]);
      struct qc_check_result res;
      struct img t;

      if (skip_512 && p.cluster_size == 512)
        continue;
      add_data (&t, &p);
      assert_clean (t.io, VSIZE / p.cluster_size);
      fn (&t);
      assert_int_equal (check (t.io, 0, &res), 0);
      if (res.corruptions != want.corruptions || res.leaks != want.leaks)
        fail_msg ("variant %zu: corruptions %" PRIu64 " leaks %" PRIu64
                  ", expected %" PRIu64 " and %" PRIu64, i, res.corruptions,
                  res.leaks, want.corruptions, want.leaks);
      io_close (t.io);
    }
}

static void dmg_leak (struct img *t) { set_rc (t, t->spare / t->cs, 1); }
static void dmg_low (struct img *t) { set_rc (t, t->d0 / t->cs, 0); }

static void
dmg_past_eof (struct img *t)
{
  wr64 (t->io, t->l2 + (t->ext ? 16 : 8), 1ull << 40);
}

static void
dmg_misaligned_l2 (struct img *t)
{
  wr64 (t->io, t->l1, (t->l2 + t->cs / 2) | QCOW2_OFLAG_COPIED);
}

static void
dmg_duplicate (struct img *t)
{
  wr64 (t->io, t->l2 + (t->ext ? 16 : 8), t->d0 | QCOW2_OFLAG_COPIED);
}

static void
dmg_copied (struct img *t)
{
  wr64 (t->io, t->l2, t->d0);
}

static void
test_leak (void **state)
{
  (void) state;
  run_damage (dmg_leak, (struct counts) { 0, 1 }, false);
}

static void
test_refcount_too_low (void **state)
{
  (void) state;
  /* the refcount, and the COPIED flag that no longer matches it */
  run_damage (dmg_low, (struct counts) { 2, 0 }, false);
}

static void
test_past_eof (void **state)
{
  (void) state;
  /* the reference is not counted; the cluster it replaced leaks */
  run_damage (dmg_past_eof, (struct counts) { 1, 1 }, false);
}

static void
test_misaligned_l2 (void **state)
{
  (void) state;
  run_damage (dmg_misaligned_l2, (struct counts) { 1, 1 }, true);
}

static void
test_duplicate (void **state)
{
  (void) state;
  run_damage (dmg_duplicate, (struct counts) { 1, 1 }, false);
}

static void
test_copied (void **state)
{
  (void) state;
  run_damage (dmg_copied, (struct counts) { 1, 0 }, false);
}

/* ---- repair ---- */

static void
repair (damage_fn *fn, unsigned flags, uint64_t leaks_fixed,
        uint64_t corruptions_fixed)
{
  size_t i;

  for (i = 0; i < NB_VARIANTS; i++)
    {
      struct create_params p = params (&variants[i]);
      struct qc_check_result res;
      struct img t;

      add_data (&t, &p);
      fn (&t);
      assert_int_equal (check (t.io, flags, &res), 0);
      assert_int_equal (res.leaks_fixed, leaks_fixed);
      assert_int_equal (res.corruptions_fixed, corruptions_fixed);
      assert_int_equal (res.leaks, 0);
      assert_int_equal (res.corruptions, 0);
      assert_clean (t.io, VSIZE / p.cluster_size);
      io_close (t.io);
    }
}

static void
test_repair_leaks (void **state)
{
  (void) state;
  repair (dmg_leak, QC_CHECK_REPAIR_LEAKS, 1, 0);
}

static void
test_repair_all (void **state)
{
  (void) state;
  repair (dmg_low, QC_CHECK_REPAIR_ALL, 0, 1);
  repair (dmg_copied, QC_CHECK_REPAIR_ALL, 0, 1);
}

static void
test_repair_leaks_refuses_rebuild (void **state)
{
  struct create_params p = params (&variants[1]);
  struct qc_check_result res;
  struct img t;

  (void) state;
  add_data (&t, &p);
  dmg_low (&t);
  dmg_leak (&t);
  assert_int_equal (check (t.io, QC_CHECK_REPAIR_LEAKS, &res), -EIO);
  assert_int_equal (check (t.io, 0, &res), 0);
  assert_int_equal (res.leaks, 1);                /* nothing was repaired */
  io_close (t.io);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_create_matrix),
    cmocka_unit_test (test_create_defaults_and_backing),
    cmocka_unit_test (test_create_errors),
    cmocka_unit_test (test_leak),
    cmocka_unit_test (test_refcount_too_low),
    cmocka_unit_test (test_past_eof),
    cmocka_unit_test (test_misaligned_l2),
    cmocka_unit_test (test_duplicate),
    cmocka_unit_test (test_copied),
    cmocka_unit_test (test_repair_leaks),
    cmocka_unit_test (test_repair_all),
    cmocka_unit_test (test_repair_leaks_refuses_rebuild),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
