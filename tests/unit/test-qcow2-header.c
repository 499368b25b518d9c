/* Unit tests for qcow2 header parsing: a valid in-memory image, then one test per invalid field. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "byte-order.h"
#include "errors.h"
#include "qchain.h"
#include "qcow2.h"

#define NAME "test.qcow2"
#define CAP_CLUSTERS 8

/*
 * A small valid image: cluster 0 header (+ extensions, backing name),
 * 1 refcount table, 2 refcount block, 3 L1 table, 4 snapshot table.
 * Tests change t.h or the buffer before opening.
 */
struct timg {
  struct qcow2_header h;
  unsigned char *buf;
  size_t len;
  uint32_t cs;
  size_t ext_off;
  struct io *io;
  void *st;
};

static void
timg_init (struct timg *t, uint32_t version, uint32_t cluster_bits,
           uint64_t size)
{
  uint64_t cover;
  unsigned i;

  memset (t, 0, sizeof *t);
  t->cs = 1u << cluster_bits;
  t->buf = calloc (CAP_CLUSTERS, t->cs);
  assert_non_null (t->buf);
  t->len = 5 * (size_t) t->cs;
  cover = (uint64_t) t->cs * (t->cs / 8);
  t->h.magic = QCOW2_MAGIC;
  t->h.version = version;
  t->h.cluster_bits = cluster_bits;
  t->h.size = size;
  t->h.l1_size = (uint32_t) ((size + cover - 1) / cover);
  if (t->h.l1_size == 0)
    t->h.l1_size = 1;
  t->h.l1_table_offset = 3 * (uint64_t) t->cs;
  t->h.refcount_table_offset = t->cs;
  t->h.refcount_table_clusters = 1;
  t->h.refcount_order = 4;
  t->h.header_length = version >= 3 ? 112 : 72;
  t->ext_off = t->h.header_length;
  put_be64 (t->buf + t->cs, 2 * (uint64_t) t->cs);
  for (i = 0; i < 5; i++)
    put_be16 (t->buf + 2 * t->cs + 2 * i, 1);
}

static void
timg_ext (struct timg *t, uint32_t type, const void *data, uint32_t len)
{
  put_be32 (t->buf + t->ext_off, type);
  put_be32 (t->buf + t->ext_off + 4, len);
  memcpy (t->buf + t->ext_off + 8, data, len);
  t->ext_off += 8 + ((len + 7) & ~7u);
}

/* Backing name right after the extensions and their end marker. */
static void
timg_backing (struct timg *t, const char *name, size_t len)
{
  t->h.backing_file_offset = t->ext_off + 8;
  t->h.backing_file_size = (uint32_t) len;
  memcpy (t->buf + t->h.backing_file_offset, name, len);
}

static int
timg_open (struct timg *t, unsigned flags)
{
  int r;

  qcow2_header_encode (&t->h, t->buf);
  clear_error ();
  assert_int_equal (io_open_mem (NAME, t->buf, t->len, &t->io), 0);
  r = qcow2_format.open (t->io, flags, &t->st);
  if (r < 0)
    assert_null (t->st);
  return r;
}

static void
timg_free (struct timg *t)
{
  if (t->st)
    qcow2_format.close (t->st);
  if (t->io)
    io_close (t->io);
  free (t->buf);
  memset (t, 0, sizeof *t);
}

/* Opening fails with -err and a message naming the image and `what`. */
static void
expect_fail (struct timg *t, unsigned flags, int err, const char *what)
{
  const char *msg;

  assert_int_equal (timg_open (t, flags), -err);
  msg = qc_get_error ();
  assert_non_null (msg);
  if (strncmp (msg, NAME ": ", strlen (NAME) + 2) != 0 || !strstr (msg, what))
    fail_msg ("message \"%s\" does not name the image and \"%s\"", msg, what);
  assert_int_equal (qc_get_errno (), err);
  timg_free (t);
}

static void
describe (struct timg *t, struct qc_info *info)
{
  memset (info, 0, sizeof *info);
  info->struct_size = sizeof *info;
  qcow2_format.describe (t->st, info);
}

/* ---- valid images ---------------------------------------------------- */

static void
test_valid_v3 (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 3, 16, 1 << 20);
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_string_equal (info.format, "qcow2");
  assert_int_equal (info.virtual_size, 1 << 20);
  assert_int_equal (info.cluster_size, 65536);
  assert_int_equal (info.qcow2_version, 3);
  assert_int_equal (info.refcount_bits, 16);
  assert_string_equal (info.compression_type, "zlib");
  assert_null (info.backing_filename);
  assert_null (info.backing_format);
  assert_null (info.data_file);
  assert_int_equal (info.flags, 0);
  assert_int_equal (info.encryption, 0);
  assert_int_equal (info.nb_snapshots, 0);
  assert_int_equal (info.nb_bitmaps, 0);
  timg_free (&t);
}

static void
test_valid_v2 (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 2, 9, 3 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "raw", 3);
  timg_backing (&t, "base.img", 8);
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.qcow2_version, 2);
  assert_int_equal (info.cluster_size, 512);
  assert_int_equal (info.refcount_bits, 16);
  assert_int_equal (info.flags, QC_INFO_HAS_BACKING);
  assert_string_equal (info.backing_filename, "base.img");
  assert_string_equal (info.backing_format, "raw");
  timg_free (&t);
}

static void
test_flags (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_DIRTY;
  t.h.compatible_features = QCOW2_COMPAT_LAZY_REFCOUNTS | (1ull << 40);
  t.h.autoclear_features = 1ull << 50;     /* unknown autoclear: ignored */
  t.h.refcount_order = 6;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.flags, QC_INFO_DIRTY | QC_INFO_LAZY_REFCOUNTS);
  assert_int_equal (info.refcount_bits, 64);
  timg_free (&t);
}

static void
test_unknown_ext_kept (void **state)
{
  struct timg t;
  const struct qcow2_state *s;

  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, 0x12345678, "hello", 5);
  timg_ext (&t, 0x9abcdef0, "", 0);
  assert_int_equal (timg_open (&t, 0), 0);
  s = t.st;
  assert_int_equal (s->nb_unknown_exts, 2);
  assert_int_equal (s->unknown_exts[0].type, 0x12345678);
  assert_int_equal (s->unknown_exts[0].len, 5);
  assert_memory_equal (s->unknown_exts[0].data, "hello", 5);
  assert_int_equal (s->unknown_exts[1].type, 0x9abcdef0);
  assert_int_equal (s->unknown_exts[1].len, 0);
  timg_free (&t);
}

/* ---- basic fields ---------------------------------------------------- */

static void
test_bad_magic (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.magic = 0x514649fa;
  expect_fail (&t, 0, EINVAL, "magic");
}

static void
test_bad_version (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.version = 4;
  expect_fail (&t, 0, ENOTSUP, "version 4");
  timg_init (&t, 2, 16, 1 << 20);
  t.h.version = 1;
  expect_fail (&t, 0, ENOTSUP, "version 1");
}

static void
test_bad_cluster_bits (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.cluster_bits = 8;
  expect_fail (&t, 0, EINVAL, "cluster_bits 8");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.cluster_bits = 22;
  expect_fail (&t, 0, EINVAL, "cluster_bits 22");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.cluster_bits = 0xffffffff;
  expect_fail (&t, 0, EINVAL, "cluster_bits");
}

static void
test_bad_header_length (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.header_length = 96;
  expect_fail (&t, 0, EINVAL, "header_length 96");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.header_length = 108;
  expect_fail (&t, 0, EINVAL, "header_length 108");
  timg_init (&t, 3, 9, 1 << 20);
  t.h.header_length = 520;
  expect_fail (&t, 0, EINVAL, "header_length 520");
}

static void
test_truncated_file (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.len = 104;                  /* header_length says 112 */
  expect_fail (&t, 0, EINVAL, "too short");
  timg_init (&t, 3, 16, 1 << 20);
  t.len = 0;
  expect_fail (&t, 0, EINVAL, "magic");
}

static void
test_bad_refcount_order (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_order = 7;
  expect_fail (&t, 0, EINVAL, "refcount_order 7");
}

/* ---- backing file ---------------------------------------------------- */

static void
test_backing_too_long (void **state)
{
  struct timg t;
  char name[1024];

  memset (name, 'a', sizeof name);
  timg_init (&t, 3, 16, 1 << 20);
  timg_backing (&t, name, 1024);
  expect_fail (&t, 0, EINVAL, "backing_file_size 1024");

  timg_init (&t, 3, 16, 1 << 20);
  timg_backing (&t, name, 1023);
  assert_int_equal (timg_open (&t, 0), 0);
  timg_free (&t);
}

static void
test_backing_outside_cluster (void **state)
{
  struct timg t;

  timg_init (&t, 3, 9, 1 << 20);
  t.h.backing_file_offset = 500;
  t.h.backing_file_size = 20;
  expect_fail (&t, 0, EINVAL, "backing_file_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.backing_file_offset = 1ull << 40;
  t.h.backing_file_size = 4;
  expect_fail (&t, 0, EINVAL, "backing_file_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.backing_file_offset = 64;             /* inside the header */
  t.h.backing_file_size = 4;
  expect_fail (&t, 0, EINVAL, "backing_file_offset");
}

static void
test_backing_nul (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  timg_backing (&t, "ab\0cd", 5);
  expect_fail (&t, 0, EINVAL, "backing file name");
}

/* ---- L1, refcount and snapshot tables -------------------------------- */

static void
test_l1_too_small (void **state)
{
  struct timg t;

  /* 64 KiB clusters: one L1 entry covers 512 MiB. */
  timg_init (&t, 3, 16, 512 << 20);
  assert_int_equal (t.h.l1_size, 1);
  t.h.size = (512 << 20) + 1;
  expect_fail (&t, 0, EINVAL, "l1_size");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_size = 0;
  expect_fail (&t, 0, EINVAL, "l1_size 0");
  /* The largest size an L1 limit allows must not overflow anything. */
  timg_init (&t, 3, 16, 1 << 20);
  t.h.size = UINT64_MAX;
  expect_fail (&t, 0, EINVAL, "l1_size");
}

static void
test_l1_too_big (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_size = (32u << 20) / 8 + 1;
  expect_fail (&t, 0, EINVAL, "l1_size");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_size = UINT32_MAX;
  expect_fail (&t, 0, EINVAL, "l1_size");
}

static void
test_l1_offset (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_table_offset += 8;
  expect_fail (&t, 0, EINVAL, "l1_table_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_table_offset = 5 * (uint64_t) t.cs;           /* at EOF */
  expect_fail (&t, 0, EINVAL, "l1_table_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_table_offset = 0xffffffffffff0000ull;
  expect_fail (&t, 0, EINVAL, "l1_table_offset");
  /* Big enough for the size, but the table runs past the file. */
  timg_init (&t, 3, 16, 1 << 20);
  t.h.l1_size = 2 * t.cs / 8 + 1;
  expect_fail (&t, 0, EINVAL, "l1_table_offset");
}

static void
test_refcount_table (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_table_offset = 100;
  expect_fail (&t, 0, EINVAL, "refcount_table_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_table_clusters = 0;
  expect_fail (&t, 0, EINVAL, "refcount_table_clusters 0");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_table_clusters = 129;                   /* > 8 MiB */
  expect_fail (&t, 0, EINVAL, "refcount_table_clusters 129");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_table_clusters = 5;                     /* past EOF */
  expect_fail (&t, 0, EINVAL, "refcount_table_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.refcount_table_clusters = UINT32_MAX;
  expect_fail (&t, 0, EINVAL, "refcount_table_clusters");
}

static void
test_snapshot_header_fields (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.nb_snapshots = 65537;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  expect_fail (&t, 0, EINVAL, "nb_snapshots 65537");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.nb_snapshots = 1;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs + 512;
  expect_fail (&t, 0, EINVAL, "snapshots_offset");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.nb_snapshots = 65536;                            /* 2.5 MiB > file */
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  expect_fail (&t, 0, EINVAL, "snapshots_offset");
}

/* Write snapshot entry at p; returns its padded length. */
static size_t
put_snapshot (unsigned char *p, const char *id, const char *name,
              uint32_t extra_len, uint64_t vm_state, uint64_t icount)
{
  size_t idl = strlen (id), nl = strlen (name), n;

  memset (p, 0, 40);
  put_be64 (p, 3 * 65536);
  put_be32 (p + 8, 1);
  put_be16 (p + 12, (uint16_t) idl);
  put_be16 (p + 14, (uint16_t) nl);
  put_be32 (p + 16, 1700000000);
  put_be32 (p + 20, 123);
  put_be64 (p + 24, 987654321);
  put_be32 (p + 32, (uint32_t) vm_state);
  put_be32 (p + 36, extra_len);
  memset (p + 40, 0, extra_len);
  if (extra_len >= 8)
    put_be64 (p + 40, vm_state);
  if (extra_len >= 16)
    put_be64 (p + 48, 1 << 20);
  if (extra_len >= 24)
    put_be64 (p + 56, icount);
  memcpy (p + 40 + extra_len, id, idl);
  memcpy (p + 40 + extra_len + idl, name, nl);
  n = 40 + extra_len + idl + nl;
  return (n + 7) & ~(size_t) 7;
}

static void
test_snapshots (void **state)
{
  struct timg t;
  struct qc_info info;
  struct qc_snapshot_info si;
  unsigned char *p;

  timg_init (&t, 3, 16, 1 << 20);
  p = t.buf + 4 * t.cs;
  p += put_snapshot (p, "1", "first", 16, 0x123456789ull, 0);
  p += put_snapshot (p, "2", "second snapshot", 24, 4096, 42);
  put_snapshot (p, "3", "old", 0, 0xdeadbeef, 0);
  t.h.nb_snapshots = 3;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.nb_snapshots, 3);

  assert_int_equal (qcow2_format.snapshot (t.st, 0, &si), 0);
  assert_string_equal (si.id, "1");
  assert_string_equal (si.name, "first");
  assert_int_equal (si.vm_state_size, 0x123456789ull);
  assert_int_equal (si.date_sec, 1700000000);
  assert_int_equal (si.date_nsec, 123);
  assert_int_equal (si.vm_clock_nsec, 987654321);
  assert_int_equal (si.icount, UINT64_MAX);
  assert_int_equal (qcow2_format.snapshot (t.st, 1, &si), 0);
  assert_string_equal (si.name, "second snapshot");
  assert_int_equal (si.vm_state_size, 4096);
  assert_int_equal (si.icount, 42);
  assert_int_equal (qcow2_format.snapshot (t.st, 2, &si), 0);
  assert_string_equal (si.name, "old");
  assert_int_equal (si.vm_state_size, 0xdeadbeef);
  assert_int_equal (qcow2_format.snapshot (t.st, 3, &si), -EINVAL);
  timg_free (&t);
}

static void
test_snapshot_bad_entries (void **state)
{
  struct timg t;
  unsigned char *p;

  timg_init (&t, 3, 16, 1 << 20);
  p = t.buf + 4 * t.cs;
  put_snapshot (p, "1", "x", 1025, 0, 0);
  t.h.nb_snapshots = 1;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  expect_fail (&t, 0, EINVAL, "extra data");

  /* The name runs past the end of the file. */
  timg_init (&t, 3, 16, 1 << 20);
  p = t.buf + 4 * t.cs;
  put_snapshot (p, "1", "x", 16, 0, 0);
  put_be16 (p + 14, 65535);
  t.h.nb_snapshots = 1;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  expect_fail (&t, 0, EINVAL, "snapshot table entry 0");

  /* The second entry would start past the end of the file. */
  timg_init (&t, 3, 16, 1 << 20);
  p = t.buf + 4 * t.cs;
  put_snapshot (p, "1", "x", 16, 0, 0);
  put_be16 (p + 14, (uint16_t) (t.cs - 64));
  t.h.nb_snapshots = 2;
  t.h.snapshots_offset = 4 * (uint64_t) t.cs;
  expect_fail (&t, 0, EINVAL, "snapshot table entry 1");
}

/* ---- header extensions ----------------------------------------------- */

static void
test_ext_past_cluster (void **state)
{
  struct timg t;

  timg_init (&t, 3, 9, 1 << 20);
  put_be32 (t.buf + 112, 0x12345678);
  put_be32 (t.buf + 116, 512 - 112 - 8 + 1);
  expect_fail (&t, 0, EINVAL, "header extension");
  timg_init (&t, 3, 16, 1 << 20);
  put_be32 (t.buf + 112, QCOW2_EXT_FEATURE_TABLE);
  put_be32 (t.buf + 116, UINT32_MAX);
  expect_fail (&t, 0, EINVAL, "header extension");
  /* Exactly filling the cluster is fine. */
  timg_init (&t, 3, 9, 1 << 20);
  put_be32 (t.buf + 112, 0x12345678);
  put_be32 (t.buf + 116, 512 - 112 - 8);
  assert_int_equal (timg_open (&t, 0), 0);
  timg_free (&t);
}

static void
test_ext_overlaps_backing (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  memcpy (t.buf + 200, "base", 4);
  t.h.backing_file_offset = 200;
  t.h.backing_file_size = 4;
  put_be32 (t.buf + 112, 0x12345678);
  put_be32 (t.buf + 116, 100);              /* 120..220 covers 200 */
  expect_fail (&t, 0, EINVAL, "header extension");
}

static void
test_ext_duplicate (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "raw", 3);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
  expect_fail (&t, 0, EINVAL, "twice");
}

static void
test_backing_format_ext (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "0123456789abcdef", 16);
  expect_fail (&t, 0, EINVAL, "backing format");
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "qco\nw2", 6);
  expect_fail (&t, 0, EINVAL, "backing format");
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "0123456789abcde", 15);
  assert_int_equal (timg_open (&t, 0), 0);
  timg_free (&t);
}

/* The parser reads cluster 0's first 4 KiB and the rest only when needed:
 * extensions and a backing name past 4 KiB are read all the same. */
static void
test_header_past_4k (void **state)
{
  struct timg t;
  struct qc_info info;
  const struct qcow2_state *s;
  unsigned char big[5000];

  memset (big, 'x', sizeof big);
  big[0] = 'a';
  big[sizeof big - 1] = 'z';
  /* An extension across 4 KiB, then more, then the backing name. */
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, 0x12345678, big, sizeof big);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
  timg_backing (&t, "base.qcow2", 10);
  assert_true (t.h.backing_file_offset > 4096);
  assert_int_equal (timg_open (&t, 0), 0);
  s = t.st;
  assert_int_equal (s->nb_unknown_exts, 1);
  assert_int_equal (s->unknown_exts[0].len, sizeof big);
  assert_memory_equal (s->unknown_exts[0].data, big, sizeof big);
  describe (&t, &info);
  assert_string_equal (info.backing_filename, "base.qcow2");
  assert_string_equal (info.backing_format, "qcow2");
  timg_free (&t);
  /* Extensions end early; the backing name lies far beyond 4 KiB. */
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "raw", 3);
  t.h.backing_file_offset = 60000;
  t.h.backing_file_size = 8;
  memcpy (t.buf + 60000, "base.img", 8);
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_string_equal (info.backing_filename, "base.img");
  assert_string_equal (info.backing_format, "raw");
  timg_free (&t);
  /* An extension header exactly at 4 KiB, and a bad one after it. */
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, 0x12345678, big, 4096 - 112 - 8);
  assert_int_equal (t.ext_off, 4096);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "qcow2", 5);
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_string_equal (info.backing_format, "qcow2");
  timg_free (&t);
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, 0x12345678, big, 4096 - 112 - 8);
  timg_ext (&t, QCOW2_EXT_BACKING_FORMAT, "0123456789abcdef", 16);
  expect_fail (&t, 0, EINVAL, "backing format");
  /* Nonzero bytes too few for an extension just before a backing name
   * at the cluster's end, after extensions that fill the rest. */
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, 0x12345678, big, 4096 - 112 - 8);
  put_be32 (t.buf + 4096, 0x12345679);
  put_be32 (t.buf + 4100, 65528 - 4096 - 8);
  t.h.backing_file_offset = 65533;
  t.h.backing_file_size = 3;
  memcpy (t.buf + 65533, "abc", 3);
  t.buf[65530] = 1;
  expect_fail (&t, 0, EINVAL, "truncated header extension");
}

static void
bitmaps_ext (struct timg *t, uint32_t nb, uint32_t reserved,
             uint64_t dir_size, uint64_t dir_off)
{
  unsigned char e[24];

  put_be32 (e, nb);
  put_be32 (e + 4, reserved);
  put_be64 (e + 8, dir_size);
  put_be64 (e + 16, dir_off);
  timg_ext (t, QCOW2_EXT_BITMAPS, e, sizeof e);
}

static void
test_bitmaps_ext (void **state)
{
  struct timg t;
  struct qc_info info;
  uint64_t c4;

  timg_init (&t, 3, 16, 1 << 20);
  c4 = 4 * (uint64_t) t.cs;
  bitmaps_ext (&t, 2, 0, 64, c4);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.nb_bitmaps, 2);
  assert_int_equal (info.flags, QC_INFO_BITMAPS);
  timg_free (&t);

  /* Without the autoclear bit the bitmaps are stale: not counted. */
  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 0, 7, 1ull << 40, 3);
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.nb_bitmaps, 0);
  assert_int_equal (info.flags, 0);
  timg_free (&t);

  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 0, 0, 64, c4);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  expect_fail (&t, 0, EINVAL, "nb_bitmaps 0");
  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 65536, 0, 64, c4);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  expect_fail (&t, 0, EINVAL, "nb_bitmaps 65536");
  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 1, 0, 64, c4 + 8);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  expect_fail (&t, 0, EINVAL, "bitmap_directory_offset");
  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 1, 0, 64, 64 * (uint64_t) t.cs);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  expect_fail (&t, 0, EINVAL, "bitmap_directory_offset");
  timg_init (&t, 3, 16, 1 << 20);
  bitmaps_ext (&t, 1, 0, (64 << 20) + 1, c4);
  t.h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
  expect_fail (&t, 0, EINVAL, "bitmap_directory_size");
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_BITMAPS, "short", 5);
  expect_fail (&t, 0, EINVAL, "bitmaps header extension");
}

/* A bitmap directory entry at p; returns its padded length. */
static size_t
put_bitmap (unsigned char *p, const char *name, uint32_t flags,
            uint8_t gran_bits, uint32_t extra)
{
  size_t nl = strlen (name), n = 24 + extra + nl;

  memset (p, 0, (n + 7) & ~(size_t) 7);
  put_be64 (p, 0);
  put_be32 (p + 8, 0);
  put_be32 (p + 12, flags);
  p[16] = 1;
  p[17] = gran_bits;
  put_be16 (p + 18, (uint16_t) nl);
  put_be32 (p + 20, extra);
  memcpy (p + 24 + extra, name, nl);
  return (n + 7) & ~(size_t) 7;
}

/* Two entries in cluster 4; the op reads the directory on first use. */
static void
bitmap_image (struct timg *t, size_t *dir_size)
{
  unsigned char *p;

  timg_init (t, 3, 16, 1 << 20);
  p = t->buf + 4 * t->cs;
  *dir_size = put_bitmap (p, "bitmap0", 2, 16, 0);
  *dir_size += put_bitmap (p + *dir_size, "b1", 1, 9, 5);
  t->h.autoclear_features = QCOW2_AUTOCLEAR_BITMAPS;
}

static void
test_bitmap_op (void **state)
{
  struct timg t;
  struct qc_bitmap_info b;
  size_t size;

  bitmap_image (&t, &size);
  bitmaps_ext (&t, 2, 0, size, 4 * (uint64_t) t.cs);
  assert_int_equal (timg_open (&t, 0), 0);
  assert_int_equal (qcow2_format.bitmap (t.st, 0, &b), 0);
  assert_string_equal (b.name, "bitmap0");
  assert_int_equal (b.granularity, 65536);
  assert_int_equal (b.flags, QC_BITMAP_AUTO);
  assert_int_equal (qcow2_format.bitmap (t.st, 1, &b), 0);
  assert_string_equal (b.name, "b1");
  assert_int_equal (b.granularity, 512);
  assert_int_equal (b.flags, QC_BITMAP_IN_USE);
  assert_int_equal (qcow2_format.bitmap (t.st, 2, &b), -EINVAL);
  timg_free (&t);
}

/* A bad directory does not stop the open (data reads never need it) but
 * fails the op with a message. */
static void
expect_bitmap_fail (struct timg *t, const char *what)
{
  struct qc_bitmap_info b;
  const char *msg;

  assert_int_equal (timg_open (t, 0), 0);
  clear_error ();
  assert_int_equal (qcow2_format.bitmap (t->st, 0, &b), -EINVAL);
  msg = qc_get_error ();
  assert_non_null (msg);
  if (strncmp (msg, NAME ": ", strlen (NAME) + 2) != 0 || !strstr (msg, what))
    fail_msg ("message \"%s\" does not name the image and \"%s\"", msg, what);
  /* Still failing, and still no leak, the second time. */
  assert_int_equal (qcow2_format.bitmap (t->st, 0, &b), -EINVAL);
  timg_free (t);
}

static void
test_bitmap_directory_bad (void **state)
{
  struct timg t;
  size_t size;
  uint64_t c4;

  bitmap_image (&t, &size);
  c4 = 4 * (uint64_t) t.cs;
  bitmaps_ext (&t, 3, 0, size, c4);
  expect_bitmap_fail (&t, "holds 2 entries, the header says 3");

  bitmap_image (&t, &size);
  bitmaps_ext (&t, 1, 0, size, c4);
  expect_bitmap_fail (&t, "bytes past its 1 entries");

  bitmap_image (&t, &size);
  bitmaps_ext (&t, 2, 0, size - 8, c4);
  expect_bitmap_fail (&t, "entry 1 runs past the directory");

  bitmap_image (&t, &size);
  put_be16 (t.buf + c4 + 18, 0);
  bitmaps_ext (&t, 2, 0, size, c4);
  expect_bitmap_fail (&t, "name_size 0");

  bitmap_image (&t, &size);
  put_be32 (t.buf + c4 + 20, UINT32_MAX);
  bitmaps_ext (&t, 2, 0, size, c4);
  expect_bitmap_fail (&t, "entry 0 runs past the directory");

  bitmap_image (&t, &size);
  put_be32 (t.buf + c4 + 12, 8);
  bitmaps_ext (&t, 2, 0, size, c4);
  expect_bitmap_fail (&t, "reserved flags");

  bitmap_image (&t, &size);
  t.buf[c4 + 16] = 2;
  bitmaps_ext (&t, 2, 0, size, c4);
  expect_bitmap_fail (&t, "unknown type 2");
}

/* ---- features -------------------------------------------------------- */

static void
feature_entry (unsigned char *p, uint8_t type, uint8_t bit, const char *name)
{
  memset (p, 0, QCOW2_FEATURE_ENTRY_LEN);
  p[0] = type;
  p[1] = bit;
  memcpy (p + 2, name, strlen (name));
}

static void
test_unknown_incompat_named (void **state)
{
  struct timg t;
  unsigned char table[3 * QCOW2_FEATURE_ENTRY_LEN];

  feature_entry (table, 0, 0, "dirty bit");
  feature_entry (table + 48, 0, 7, "foo-bar");
  feature_entry (table + 96, 1, 9, "not-this-one");
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_FEATURE_TABLE, table, sizeof table);
  t.h.incompatible_features = (1ull << 7) | (1ull << 9) | 1;
  expect_fail (&t, 0, ENOTSUP,
               "unsupported qcow2 feature(s): foo-bar (bit 7), bit 9");
}

static void
test_unknown_incompat_unnamed (void **state)
{
  struct timg t;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = 1ull << 63;
  expect_fail (&t, 0, ENOTSUP, "unsupported qcow2 feature(s): bit 63");
}

static void
test_compression_type (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION;
  t.h.compression_type = QCOW2_COMPRESS_ZSTD;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_string_equal (info.compression_type, "zstd");
  timg_free (&t);

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION;
  t.h.compression_type = 2;
  expect_fail (&t, 0, ENOTSUP, "compression_type 2");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.compression_type = QCOW2_COMPRESS_ZSTD;
  expect_fail (&t, 0, EINVAL, "compression_type 1");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION;
  expect_fail (&t, 0, EINVAL, "compression_type is 0");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.header_length = 104;
  t.h.incompatible_features = QCOW2_INCOMPAT_COMPRESSION;
  t.h.compression_type = QCOW2_COMPRESS_ZSTD;
  expect_fail (&t, 0, EINVAL, "no compression_type field");
}

static void
test_extended_l2_cluster_bits (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 3, 13, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_EXTL2;
  expect_fail (&t, 0, EINVAL, "cluster_bits >= 14");
  timg_init (&t, 3, 14, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_EXTL2;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.flags, QC_INFO_EXTENDED_L2);
  timg_free (&t);
  /* Extended entries are twice as big: one L1 entry covers half as much. */
  timg_init (&t, 3, 14, 128 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_EXTL2;
  expect_fail (&t, 0, EINVAL, "l1_size");
}

static void
test_corrupt_bit (void **state)
{
  struct timg t;
  struct qc_info info;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_CORRUPT;
  assert_int_equal (timg_open (&t, 0), 0);
  describe (&t, &info);
  assert_int_equal (info.flags, QC_INFO_CORRUPT);
  timg_free (&t);
  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_CORRUPT;
  expect_fail (&t, FMT_OPEN_WRITE, EACCES, "corrupt");
}

static void
test_encryption (void **state)
{
  struct timg t;
  struct qc_info info;
  struct layer_extent e;
  char buf[512];
  unsigned char crypto[16];

  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_AES;
  expect_fail (&t, 0, ENOTSUP, "encrypted");

  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_AES;
  assert_int_equal (timg_open (&t, FMT_OPEN_DESCRIBE), 0);
  describe (&t, &info);
  assert_int_equal (info.flags, QC_INFO_ENCRYPTED);
  assert_int_equal (info.encryption, 1);
  assert_int_equal (qcow2_format.status (t.st, 0, 512, &e), -ENOTSUP);
  assert_non_null (strstr (qc_get_error (), "encrypted"));
  assert_int_equal (qcow2_format.read (t.st, buf, sizeof buf, 0), -ENOTSUP);
  assert_non_null (strstr (qc_get_error (), NAME ": "));
  timg_free (&t);

  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = 3;
  expect_fail (&t, FMT_OPEN_DESCRIBE, EINVAL, "crypt_method 3");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_LUKS;
  expect_fail (&t, FMT_OPEN_DESCRIBE, EINVAL, "crypto header extension");

  put_be64 (crypto, 4 * 65536);
  put_be64 (crypto + 8, 4096);
  timg_init (&t, 3, 16, 1 << 20);
  timg_ext (&t, QCOW2_EXT_CRYPTO, crypto, sizeof crypto);
  expect_fail (&t, 0, EINVAL, "crypto header extension without LUKS");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_LUKS;
  timg_ext (&t, QCOW2_EXT_CRYPTO, crypto, sizeof crypto);
  expect_fail (&t, 0, ENOTSUP, "encrypted");
  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_LUKS;
  timg_ext (&t, QCOW2_EXT_CRYPTO, crypto, sizeof crypto);
  assert_int_equal (timg_open (&t, FMT_OPEN_DESCRIBE), 0);
  describe (&t, &info);
  assert_int_equal (info.encryption, 2);
  timg_free (&t);
  put_be64 (crypto, 4 * 65536 + 512);
  timg_init (&t, 3, 16, 1 << 20);
  t.h.crypt_method = QCOW2_CRYPT_LUKS;
  timg_ext (&t, QCOW2_EXT_CRYPTO, crypto, sizeof crypto);
  expect_fail (&t, FMT_OPEN_DESCRIBE, EINVAL, "crypto header");
}

static void
test_data_file (void **state)
{
  struct timg t;
  struct qc_info info;
  struct layer_extent e;

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_DATA_FILE;
  timg_ext (&t, QCOW2_EXT_DATA_FILE, "disk.raw", 8);
  expect_fail (&t, 0, ENOTSUP, "external data file");

  timg_init (&t, 3, 16, 1 << 20);
  t.h.incompatible_features = QCOW2_INCOMPAT_DATA_FILE;
  t.h.autoclear_features = QCOW2_AUTOCLEAR_DATA_RAW;
  timg_ext (&t, QCOW2_EXT_DATA_FILE, "disk.raw", 8);
  assert_int_equal (timg_open (&t, FMT_OPEN_DESCRIBE), 0);
  describe (&t, &info);
  assert_int_equal (info.flags, QC_INFO_DATA_FILE | QC_INFO_DATA_FILE_RAW);
  assert_string_equal (info.data_file, "disk.raw");
  assert_int_equal (qcow2_format.status (t.st, 0, 512, &e), -ENOTSUP);
  assert_non_null (strstr (qc_get_error (), "external data file"));
  timg_free (&t);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_valid_v3),
    cmocka_unit_test (test_valid_v2),
    cmocka_unit_test (test_flags),
    cmocka_unit_test (test_unknown_ext_kept),
    cmocka_unit_test (test_bad_magic),
    cmocka_unit_test (test_bad_version),
    cmocka_unit_test (test_bad_cluster_bits),
    cmocka_unit_test (test_bad_header_length),
    cmocka_unit_test (test_truncated_file),
    cmocka_unit_test (test_bad_refcount_order),
    cmocka_unit_test (test_backing_too_long),
    cmocka_unit_test (test_backing_outside_cluster),
    cmocka_unit_test (test_backing_nul),
    cmocka_unit_test (test_l1_too_small),
    cmocka_unit_test (test_l1_too_big),
    cmocka_unit_test (test_l1_offset),
    cmocka_unit_test (test_refcount_table),
    cmocka_unit_test (test_snapshot_header_fields),
    cmocka_unit_test (test_snapshots),
    cmocka_unit_test (test_snapshot_bad_entries),
    cmocka_unit_test (test_ext_past_cluster),
    cmocka_unit_test (test_ext_overlaps_backing),
    cmocka_unit_test (test_ext_duplicate),
    cmocka_unit_test (test_backing_format_ext),
    cmocka_unit_test (test_header_past_4k),
    cmocka_unit_test (test_bitmaps_ext),
    cmocka_unit_test (test_bitmap_op),
    cmocka_unit_test (test_bitmap_directory_bad),
    cmocka_unit_test (test_unknown_incompat_named),
    cmocka_unit_test (test_unknown_incompat_unnamed),
    cmocka_unit_test (test_compression_type),
    cmocka_unit_test (test_extended_l2_cluster_bits),
    cmocka_unit_test (test_corrupt_bit),
    cmocka_unit_test (test_encryption),
    cmocka_unit_test (test_data_file),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
