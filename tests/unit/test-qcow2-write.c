/* Unit tests for the qcow2 write path on in-memory images: COW, subclusters, zero/discard, compression, refcounts, growth, snapshots, header rewrite. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "byte-order.h"
#include "errors.h"
#include "qchain.h"
#include "qcow2.h"

#define NAME "w.qcow2"

struct img {
  struct io *io;
  struct qcow2_state *s;
};

static void
mk (struct img *m, uint32_t version, uint32_t cs, uint32_t rbits, bool ext,
    uint64_t size)
{
  struct create_params p = {
    .size = size, .version = version, .cluster_size = cs,
    .refcount_bits = rbits, .extended_l2 = ext,
  };
  void *st;

  assert_int_equal (io_open_mem (NAME, NULL, 0, &m->io), 0);
  assert_int_equal (qcow2_format.create (m->io, &p), 0);
  assert_int_equal (qcow2_format.open (m->io, FMT_OPEN_WRITE, &st), 0);
  m->s = st;
}

static void
reopen (struct img *m, unsigned flags)
{
  void *st;

  qcow2_format.close (m->s);
  m->s = NULL;
  assert_int_equal (qcow2_format.open (m->io, flags, &st), 0);
  m->s = st;
}

static void
done (struct img *m)
{
  qcow2_format.close (m->s);
  io_close (m->io);
}

/* Flushed and clean by the check op: no corruption, no leak. */
static void
clean (struct img *m)
{
  struct qc_check_result res = { .struct_size = sizeof res };

  assert_int_equal (qcow2_format.flush (m->s), 0);
  assert_int_equal (qcow2_format.check (m->s, 0, &res, NULL, NULL), 0);
  assert_int_equal (res.corruptions, 0);
  assert_int_equal (res.leaks, 0);
}

static uint64_t
refcount (struct img *m, uint64_t host)
{
  uint64_t rc;

  assert_int_equal (qcow2_get_refcount (m->s, host / m->s->cluster_size,
                                        &rc), 0);
  return rc;
}

static struct layer_extent
status (struct img *m, uint64_t off, uint64_t len)
{
  struct layer_extent e;

  assert_int_equal (qcow2_format.status (m->s, off, len, &e), 0);
  return e;
}

static unsigned char
pattern (uint64_t off)
{
  return (unsigned char) (off * 7 + 3);
}

static int
backing_read (void *opaque, void *buf, size_t n, uint64_t off)
{
  size_t i;

  (void) opaque;
  for (i = 0; i < n; i++)
    ((unsigned char *) buf)[i] = pattern (off + i);
  return 0;
}

/* An endless pattern below: every grown range must be zeroed. */
static const struct backing_reader backing = { backing_read, NULL, UINT64_MAX };

static void
fill (unsigned char *p, size_t n, unsigned seed)
{
  size_t i;

  for (i = 0; i < n; i++)
    p[i] = (unsigned char) (seed + i * 13 + (i >> 8));
}

/* Layer contents at [off, off+n) equal want. */
static void
expect (struct img *m, uint64_t off, const unsigned char *want, size_t n)
{
  unsigned char *got = malloc (n);

  assert_non_null (got);
  assert_int_equal (qcow2_format.read (m->s, got, n, off), 0);
  assert_memory_equal (got, want, n);
  free (got);
}

/* A partial write into an unallocated cluster copies the rest of the
 * cluster from the view below. */
static void
test_cow_backing (void **state)
{
  struct img m;
  unsigned char data[100], want[65536];
  uint64_t i;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  qcow2_format.set_backing_reader (m.s, &backing);
  fill (data, sizeof data, 1);
  assert_int_equal (qcow2_format.pwrite (m.s, data, sizeof data, 65536 + 1000), 0);
  for (i = 0; i < sizeof want; i++)
    want[i] = pattern (65536 + i);
  memcpy (want + 1000, data, sizeof data);
  expect (&m, 65536, want, sizeof want);
  assert_int_equal (status (&m, 0, 65536).type, EXT_UNALLOC);
  clean (&m);
  reopen (&m, 0);
  expect (&m, 65536, want, sizeof want);
  done (&m);
}

/* Regression: growing an image over a longer backing file must not
 * uncover the backing's data: the grown range reads as zeroes (qemu-img
 * resize), up to the backing's end; past it nothing needs zeroing. */
static void
test_resize_hides_backing (void **state)
{
  static const struct backing_reader below = { backing_read, NULL, 3 << 20 };
  unsigned char data[100], want[65536];
  struct img m_resize;

  (void) state;
  mk (&m_resize, 3, 65536, 16, false, 1 << 20);
  qcow2_format.set_backing_reader (m_resize.s, &below);
  assert_int_equal (qcow2_format.resize (m_resize.s, 4 << 20), 0);
  assert_int_equal (status (&m_resize, 1 << 20, 2 << 20).type, EXT_ZERO);
  assert_int_equal (status (&m_resize, 1 << 20, 2 << 20).len, 2 << 20);
  assert_int_equal (status (&m_resize, 3 << 20, 1 << 20).type, EXT_UNALLOC);
  /* a partial write there completes its cluster with zeroes, not pattern */
  fill (data, sizeof data, 5);
  assert_int_equal (qcow2_format.pwrite (m_resize.s, data, sizeof data,
                                         (2 << 20) + 100), 0);
  memset (want, 0, sizeof want);
  memcpy (want + 100, data, sizeof data);
  expect (&m_resize, 2 << 20, want, sizeof want);
  clean (&m_resize);
  reopen (&m_resize, 0);
  assert_int_equal (status (&m_resize, (2 << 20) + 65536, 65536).type,
                    EXT_ZERO);
  expect (&m_resize, 2 << 20, want, sizeof want);
  done (&m_resize);
}

/* Extended L2: a whole subcluster is just written; a partial one is
 * completed from below, only that subcluster. */
static void
test_subcluster (void **state)
{
  struct img m;
  unsigned char sc[2048], small[10], want[2048];
  struct layer_extent e;
  uint64_t i;

  (void) state;
  mk (&m, 3, 65536, 16, true, 1 << 20);
  qcow2_format.set_backing_reader (m.s, &backing);
  fill (sc, sizeof sc, 5);
  assert_int_equal (qcow2_format.pwrite (m.s, sc, sizeof sc, 4096), 0);
  e = status (&m, 0, 65536);
  assert_int_equal (e.type, EXT_UNALLOC);
  assert_int_equal (e.len, 4096);
  e = status (&m, 4096, 65536 - 4096);
  assert_int_equal (e.type, EXT_DATA);
  assert_int_equal (e.len, 2048);
  assert_int_equal (status (&m, 6144, 2048).type, EXT_UNALLOC);
  expect (&m, 4096, sc, sizeof sc);

  /* Partial write in subcluster 5 of the same cluster. */
  fill (small, sizeof small, 9);
  assert_int_equal (qcow2_format.pwrite (m.s, small, sizeof small,
                                         5 * 2048 + 100), 0);
  for (i = 0; i < sizeof want; i++)
    want[i] = pattern (5 * 2048 + i);
  memcpy (want + 100, small, sizeof small);
  expect (&m, 5 * 2048, want, sizeof want);
  assert_int_equal (status (&m, 4 * 2048, 2048).type, EXT_UNALLOC);
  assert_int_equal (status (&m, 6 * 2048, 2048).type, EXT_UNALLOC);
  e = status (&m, 5 * 2048, 2048);
  assert_int_equal (e.type, EXT_DATA);
  clean (&m);
  reopen (&m, 0);
  expect (&m, 4096, sc, sizeof sc);
  expect (&m, 5 * 2048, want, sizeof want);
  done (&m);
}

static void
zero_case (uint32_t version, bool with_backing, enum ext_type want_type)
{
  struct img m;
  unsigned char *buf = malloc (65536), *z = calloc (1, 65536);
  uint64_t host;

  mk (&m, version, 65536, 16, false, 1 << 20);
  if (with_backing)
    qcow2_format.set_backing_reader (m.s, &backing);
  fill (buf, 65536, 3);
  assert_int_equal (qcow2_format.pwrite (m.s, buf, 65536, 65536), 0);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  host = status (&m, 65536, 65536).host_off;
  assert_int_equal (qcow2_format.zero (m.s, 65536, 65536), 0);
  assert_int_equal (status (&m, 65536, 65536).type, want_type);
  expect (&m, 65536, z, 65536);
  /* Partial zeroes inside a written cluster. */
  assert_int_equal (qcow2_format.pwrite (m.s, buf, 65536, 3 * 65536), 0);
  assert_int_equal (qcow2_format.zero (m.s, 3 * 65536 + 10, 100), 0);
  memset (buf + 10, 0, 100);
  expect (&m, 3 * 65536, buf, 65536);
  clean (&m);
  if (want_type != EXT_DATA)
    assert_int_equal (refcount (&m, host), 0);
  reopen (&m, 0);
  expect (&m, 65536, z, 65536);
  expect (&m, 3 * 65536, buf, 65536);
  done (&m);
  free (buf);
  free (z);
}

static void
test_zero_v3 (void **state)
{
  (void) state;
  zero_case (3, false, EXT_ZERO);
  zero_case (3, true, EXT_ZERO);
}

static void
test_zero_v2 (void **state)
{
  (void) state;
  zero_case (2, false, EXT_UNALLOC);
  zero_case (2, true, EXT_DATA);
}

static void
test_discard_frees (void **state)
{
  struct img m;
  unsigned char buf[65536];
  uint64_t host;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  fill (buf, sizeof buf, 7);
  assert_int_equal (qcow2_format.pwrite (m.s, buf, sizeof buf, 0), 0);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  host = status (&m, 0, 65536).host_off;
  assert_int_equal (refcount (&m, host), 1);
  assert_int_equal (qcow2_format.discard (m.s, 0, 65536), 0);
  assert_int_equal (status (&m, 0, 65536).type, EXT_UNALLOC);
  /* The drop waits for the L2 table to be durable. */
  assert_int_equal (refcount (&m, host), 1);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  assert_int_equal (refcount (&m, host), 0);
  clean (&m);
  /* The freed cluster is reused. */
  assert_int_equal (qcow2_format.pwrite (m.s, buf, sizeof buf, 65536), 0);
  assert_int_equal (status (&m, 65536, 65536).host_off, host);
  clean (&m);
  done (&m);
}

static void
compressed_case (bool zstd)
{
  struct img m;
  struct create_params p = {
    .size = 1 << 20, .version = 3, .cluster_size = 65536,
    .refcount_bits = 16, .zstd = zstd,
  };
  unsigned char *buf = malloc (4 * 65536);
  void *st;
  size_t i;

  assert_int_equal (io_open_mem (NAME, NULL, 0, &m.io), 0);
  assert_int_equal (qcow2_format.create (m.io, &p), 0);
  assert_int_equal (qcow2_format.open (m.io, FMT_OPEN_WRITE, &st), 0);
  m.s = st;
  for (i = 0; i < 4 * 65536; i++)
    buf[i] = (unsigned char) ("abcabd"[i % 6] + (i / 65536));
  /* the last cluster does not compress */
  fill (buf + 3 * 65536, 65536, 1);
  for (i = 3 * 65536; i < 4 * 65536; i++)
    buf[i] ^= (unsigned char) (rand () & 0xff);
  assert_int_equal (qcow2_format.pwrite_compressed (m.s, buf, 4 * 65536,
                                                    65536), 0);
  assert_int_equal (status (&m, 65536, 65536).type, EXT_COMPRESSED);
  assert_int_equal (status (&m, 3 * 65536, 65536).type, EXT_COMPRESSED);
  assert_int_equal (status (&m, 4 * 65536, 65536).type, EXT_DATA);
  expect (&m, 65536, buf, 4 * 65536);
  clean (&m);
  /* Overwrite part of a compressed cluster: it becomes a plain one. */
  memset (buf + 5, 'x', 10);
  assert_int_equal (qcow2_format.pwrite (m.s, buf + 5, 10, 65536 + 5), 0);
  assert_int_equal (status (&m, 65536, 65536).type, EXT_DATA);
  clean (&m);
  reopen (&m, 0);
  expect (&m, 65536, buf, 4 * 65536);
  done (&m);
  free (buf);
}

static void
test_compressed (void **state)
{
  (void) state;
  compressed_case (false);
  compressed_case (true);
}

/* Compressed data spilling into the next cluster where that cluster is
 * the first of a new refcount block's range: the block must not be put
 * in the cluster the data goes to (small clusters: a block covers 256 of
 * them, so thousands of packed clusters cross many). */
static void
compressed_across_refblocks_case (bool zstd)
{
  struct img m;
  struct create_params p = {
    .size = 4 << 20, .version = 3, .cluster_size = 512,
    .refcount_bits = 16, .zstd = zstd,
  };
  size_t n = 4 << 20, i;
  unsigned char *buf = malloc (n);
  void *st;

  assert_non_null (buf);
  assert_int_equal (io_open_mem (NAME, NULL, 0, &m.io), 0);
  assert_int_equal (qcow2_format.create (m.io, &p), 0);
  assert_int_equal (qcow2_format.open (m.io, FMT_OPEN_WRITE, &st), 0);
  m.s = st;
  /* Clusters of a few distinct bytes then a run: compressed sizes vary
   * from cluster to cluster, so the packing crosses boundaries at all
   * places. */
  for (i = 0; i < n; i++)
    buf[i] = (i % 512) < 8 + (i / 512) % 97 ? (unsigned char) (i * 31 + 7)
      : (unsigned char) (i / 512);
  assert_int_equal (qcow2_format.pwrite_compressed (m.s, buf, n, 0), 0);
  assert_int_equal (status (&m, 0, 512).type, EXT_COMPRESSED);
  assert_int_equal (status (&m, n - 512, 512).type, EXT_COMPRESSED);
  expect (&m, 0, buf, n);
  clean (&m);
  reopen (&m, 0);
  expect (&m, 0, buf, n);
  done (&m);
  free (buf);
}

static void
test_compressed_across_refblocks (void **state)
{
  (void) state;
  compressed_across_refblocks_case (false);
  compressed_across_refblocks_case (true);
}

static void
widths_case (uint32_t bits)
{
  struct img m;
  unsigned char buf[3 * 4096];

  mk (&m, 3, 4096, bits, false, 1 << 20);
  fill (buf, sizeof buf, bits);
  assert_int_equal (qcow2_format.pwrite (m.s, buf, sizeof buf, 8192), 0);
  clean (&m);
  assert_int_equal (refcount (&m, status (&m, 8192, 4096).host_off), 1);
  reopen (&m, FMT_OPEN_WRITE);
  expect (&m, 8192, buf, sizeof buf);
  assert_int_equal (qcow2_format.discard (m.s, 8192, 4096), 0);
  clean (&m);
  done (&m);
}

static void
test_refcount_widths (void **state)
{
  (void) state;
  widths_case (1);
  widths_case (16);
  widths_case (64);
}

/* 512-byte clusters, 64-bit refcounts: a block covers 64 clusters and one
 * table cluster 4096: writing 4 MiB needs a bigger table. */
static void
test_reftable_growth (void **state)
{
  struct img m;
  size_t n = 4 << 20;
  unsigned char *buf = malloc (n);
  uint32_t before;

  (void) state;
  mk (&m, 3, 512, 64, false, 8 << 20);
  before = m.s->h.refcount_table_clusters;
  fill (buf, n, 11);
  assert_int_equal (qcow2_format.pwrite (m.s, buf, n, 1 << 20), 0);
  clean (&m);
  assert_true (m.s->h.refcount_table_clusters > before);
  reopen (&m, 0);
  expect (&m, 1 << 20, buf, n);
  done (&m);
  free (buf);
}

static void
test_l1_growth (void **state)
{
  struct img m;
  unsigned char a[512], b[512];
  uint64_t old_l1;

  (void) state;
  mk (&m, 3, 512, 16, false, 65536);
  fill (a, sizeof a, 1);
  fill (b, sizeof b, 2);
  assert_int_equal (qcow2_format.pwrite (m.s, a, sizeof a, 1024), 0);
  old_l1 = m.s->h.l1_table_offset;
  assert_int_equal (qcow2_format.resize (m.s, 8 << 20), 0);
  assert_true (m.s->h.l1_table_offset != old_l1);
  assert_int_equal (m.s->h.size, 8 << 20);
  assert_int_equal (qcow2_format.pwrite (m.s, b, sizeof b, (8 << 20) - 512),
                    0);
  clean (&m);
  reopen (&m, 0);
  assert_int_equal (m.s->h.size, 8 << 20);
  expect (&m, 1024, a, sizeof a);
  expect (&m, (8 << 20) - 512, b, sizeof b);
  done (&m);
}

/* What qemu-img snapshot -c does to the refcounts: every L2 table and
 * data cluster of the active L1 gains a reference from a copy of the L1
 * table, and COPIED flags go. The snapshot table itself is not needed
 * here. */
static uint64_t
fake_snapshot (struct img *m)
{
  struct qcow2_state *s = m->s;
  const unsigned char *t;
  uint64_t i, j, l2, e, bm, first, got;

  assert_int_equal (qcow2_alloc_clusters (s, 1, &first, &got), 0);
  for (i = 0; i < s->h.l1_size; i++)
    {
      l2 = s->l1[i] & QCOW2_OFFSET_MASK;
      if (l2 == 0)
        continue;
      assert_int_equal (qcow2_l2_cache_get (&s->l2, s->io, l2, &t), 0);
      for (j = 0; j < (1ull << s->l2_bits); j++)
        {
          e = qcow2_l2_get (s, t, j, &bm);
          if (e & QCOW2_OFFSET_MASK)
            assert_int_equal (qcow2_refcount_add (s, (e & QCOW2_OFFSET_MASK)
                                                  / s->cluster_size, 1), 0);
        }
      assert_int_equal (qcow2_refcount_add (s, l2 / s->cluster_size, 1), 0);
      s->l1[i] &= ~QCOW2_OFLAG_COPIED;
      qcow2_l1_dirty (s, i);
    }
  return first * s->cluster_size;
}

static void
test_snapshot_cow (void **state)
{
  struct img m;
  unsigned char a[65536], b[100], old[65536];
  uint64_t host, l2, nhost;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  fill (a, sizeof a, 4);
  assert_int_equal (qcow2_format.pwrite (m.s, a, sizeof a, 0), 0);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  host = status (&m, 0, 65536).host_off;
  l2 = m.s->l1[0] & QCOW2_OFFSET_MASK;
  fake_snapshot (&m);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  assert_int_equal (refcount (&m, host), 2);

  fill (b, sizeof b, 8);
  assert_int_equal (qcow2_format.pwrite (m.s, b, sizeof b, 50), 0);
  assert_int_equal (qcow2_format.flush (m.s), 0);
  nhost = status (&m, 0, 65536).host_off;
  assert_true (nhost != host);
  assert_true ((m.s->l1[0] & QCOW2_OFFSET_MASK) != l2);
  assert_true (m.s->l1[0] & QCOW2_OFLAG_COPIED);
  /* The snapshot's cluster and table are untouched, one reference each. */
  assert_int_equal (io_pread (m.io, old, sizeof old, host), 0);
  assert_memory_equal (old, a, sizeof a);
  assert_int_equal (refcount (&m, host), 1);
  assert_int_equal (refcount (&m, l2), 1);
  assert_int_equal (refcount (&m, nhost), 1);
  memcpy (a + 50, b, sizeof b);
  expect (&m, 0, a, sizeof a);
  done (&m);
}

/* Insert a header extension before the end marker of cluster 0. */
static void
add_ext (struct img *m, uint32_t type, const void *data, uint32_t len)
{
  uint32_t cs = m->s->cluster_size, hl = m->s->h.header_length;
  unsigned char *c0 = calloc (1, cs);
  uint64_t off = hl;

  assert_int_equal (io_pread (m->io, c0, cs, 0), 0);
  while (get_be32 (c0 + off) != 0)
    off += 8 + ((get_be32 (c0 + off + 4) + 7) & ~7u);
  put_be32 (c0 + off, type);
  put_be32 (c0 + off + 4, len);
  memcpy (c0 + off + 8, data, len);
  assert_int_equal (io_pwrite (m->io, c0, cs, 0), 0);
  free (c0);
}

static void
test_bitmaps_refused (void **state)
{
  struct img m;
  unsigned char ext[24] = { 0 };
  void *st;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  add_ext (&m, QCOW2_EXT_BITMAPS, ext, sizeof ext);
  reopen (&m, 0);
  assert_int_equal (qcow2_format.open (m.io, FMT_OPEN_WRITE, &st),
                    -ENOTSUP);
  assert_non_null (strstr (qc_get_error (), "persistent dirty bitmaps"));
  done (&m);
}

static void
test_dirty_refused (void **state)
{
  struct img m;
  unsigned char f[8];
  void *st;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  reopen (&m, 0);
  put_be64 (f, QCOW2_INCOMPAT_DIRTY);
  assert_int_equal (io_pwrite (m.io, f, 8, 72), 0);
  assert_int_equal (qcow2_format.open (m.io, FMT_OPEN_WRITE, &st), -EACCES);
  assert_int_equal (qcow2_format.open (m.io, FMT_OPEN_WRITE | FMT_OPEN_REPAIR,
                                       &st), 0);
  qcow2_format.close (st);
  done (&m);
}

static void
test_set_backing (void **state)
{
  struct img m;
  char name[1100];
  unsigned char *before;
  const unsigned char *d;
  size_t len;

  (void) state;
  mk (&m, 3, 65536, 16, false, 1 << 20);
  add_ext (&m, 0x12345678, "hello", 5);
  reopen (&m, FMT_OPEN_WRITE);
  assert_int_equal (m.s->nb_unknown_exts, 1);
  assert_int_equal (qcow2_format.set_backing (m.s, "base.qcow2", "qcow2"), 0);
  reopen (&m, FMT_OPEN_WRITE);
  assert_string_equal (m.s->backing_file, "base.qcow2");
  assert_string_equal (m.s->backing_format, "qcow2");
  assert_int_equal (m.s->nb_unknown_exts, 1);
  assert_int_equal (m.s->unknown_exts[0].type, 0x12345678);
  assert_memory_equal (m.s->unknown_exts[0].data, "hello", 5);
  assert_true (m.s->nb_features > 0);

  /* Too long, and too big for the cluster: nothing changes. */
  d = io_mem_data (m.io, &len);
  before = malloc (65536);
  memcpy (before, d, 65536);
  memset (name, 'n', sizeof name);
  name[1024] = '\0';
  assert_int_equal (qcow2_format.set_backing (m.s, name, "raw"),
                    -ENAMETOOLONG);
  assert_non_null (strstr (qc_get_error (), NAME));
  d = io_mem_data (m.io, &len);
  assert_memory_equal (d, before, 65536);
  done (&m);
  free (before);

  mk (&m, 3, 512, 16, false, 1 << 20);
  memset (name, 'n', sizeof name);
  name[600] = '\0';
  assert_int_equal (qcow2_format.set_backing (m.s, name, "raw"), -ENOSPC);
  assert_non_null (strstr (qc_get_error (), NAME));
  assert_int_equal (qcow2_format.set_backing (m.s, "b", "raw"), 0);
  reopen (&m, 0);
  assert_string_equal (m.s->backing_file, "b");
  assert_string_equal (m.s->backing_format, "raw");
  assert_int_equal (qcow2_format.set_backing (m.s, NULL, NULL), -EBADF);
  reopen (&m, FMT_OPEN_WRITE);
  assert_int_equal (qcow2_format.set_backing (m.s, NULL, NULL), 0);
  reopen (&m, 0);
  assert_null (m.s->backing_file);
  assert_null (m.s->backing_format);
  done (&m);
}

/* The bytes of a new image made with P, for runs to start from. */
static unsigned char *
image_bytes (const struct create_params *p, size_t *len)
{
  const unsigned char *d;
  unsigned char *base;
  struct io *io;

  assert_int_equal (io_open_mem (NAME, NULL, 0, &io), 0);
  assert_int_equal (qcow2_format.create (io, p), 0);
  d = io_mem_data (io, len);
  base = malloc (*len);
  assert_non_null (base);
  memcpy (base, d, *len);
  io_close (io);
  return base;
}

/* What a stopped run persisted in IO (closed here), opened read-only in
 * *IO2; *LEN its size. */
static void *
open_persisted (struct io *io, struct io **io2, size_t *len)
{
  const unsigned char *d = io_mem_data (io, len);
  void *st;

  assert_int_equal (io_open_mem (NAME, d, *len, io2), 0);
  io_close (io);
  assert_int_equal (qcow2_format.open (*io2, 0, &st), 0);
  return st;
}

/* A crash at every write of a small run leaves a consistent image. */
static void
test_crash_points (void **state)
{
  struct create_params p = {
    .size = 1 << 20, .version = 3, .cluster_size = 4096, .refcount_bits = 16,
  };
  unsigned char *base, buf[20000];
  struct qc_check_result res;
  size_t base_len, len;
  uint64_t n, total = 0;
  struct io *io, *io2;
  void *st;

  (void) state;
  base = image_bytes (&p, &base_len);
  fill (buf, sizeof buf, 3);
  for (n = 0; n == 0 || n <= total; n++)
    {
      assert_int_equal (io_open_mem (NAME, base, base_len, &io), 0);
      assert_int_equal (qcow2_format.open (io, FMT_OPEN_WRITE, &st), 0);
      io_mem_set_write_limit (io, total ? n : UINT64_MAX);
      if (qcow2_format.pwrite (st, buf, sizeof buf, 5000) == 0
          && qcow2_format.flush (st) == 0
          && qcow2_format.zero (st, 4096, 8192) == 0
          && qcow2_format.discard (st, 16384, 4096) == 0
          && qcow2_format.pwrite (st, buf, 3000, 100000) == 0)
        qcow2_format.resize (st, 3 << 20);
      qcow2_format.close (st);
      if (total == 0)
        {
          total = io_mem_writes (io);
          n = (uint64_t) -1;     /* start over at 0 */
          io_close (io);
          continue;
        }
      /* What was persisted: no corruption (leaks allowed). */
      st = open_persisted (io, &io2, &len);
      memset (&res, 0, sizeof res);
      res.struct_size = sizeof res;
      assert_int_equal (qcow2_format.check (st, 0, &res, NULL, NULL), 0);
      assert_int_equal (res.corruptions, 0);
      qcow2_format.close (st);
      io_close (io2);
    }
  free (base);
}

/* A data sink that holds every write until drained, as the copy core's
 * engine does with writes in flight. */
struct held {
  struct io *io;
  unsigned n;
  struct { unsigned char *p; size_t len; uint64_t off; } w[16];
};

static int
held_write (void *opaque, const void *buf, size_t n, uint64_t off)
{
  struct held *h = opaque;

  assert_true (h->n < 16);
  h->w[h->n].p = malloc (n);
  assert_non_null (h->w[h->n].p);
  memcpy (h->w[h->n].p, buf, n);
  h->w[h->n].len = n;
  h->w[h->n].off = off;
  h->n++;
  return 0;
}

static int
held_drain (void *opaque)
{
  struct held *h = opaque;
  unsigned i;
  int r = 0;

  for (i = 0; i < h->n; i++)
    {
      if (r == 0)
        r = io_pwrite (h->io, h->w[i].p, h->w[i].len, h->w[i].off);
      free (h->w[i].p);
    }
  h->n = 0;
  return r;
}

/* Leaks the check reports past the end of the file. */
struct past_end {
  uint64_t clusters, count;
};

static void
count_past_end (void *opaque, const char *line)
{
  struct past_end *pe = opaque;
  unsigned long long c;

  if (sscanf (line, "Leaked cluster %llu", &c) == 1 && c >= pe->clusters)
    pe->count++;
}

/* Stopped at any write of a flush (a process killed), an image whose
 * data was still queued in its sink leaves its new clusters inside the
 * file, not counted past its end where qemu-img check cannot see them
 * (and where they become leaks once the file grows). Regression: the
 * refcount blocks were written before the sink was drained. */
static void
test_sink_drained_before_refcounts (void **state)
{
  struct create_params p = {
    .size = 1 << 20, .version = 3, .cluster_size = 4096, .refcount_bits = 16,
  };
  unsigned char *base, buf[5 * 4096];
  size_t base_len, len;
  uint64_t n, total = 0;
  struct io *io;
  void *st;

  (void) state;
  base = image_bytes (&p, &base_len);
  fill (buf, sizeof buf, 9);
  for (n = 0; n == 0 || n <= total; n++)
    {
      struct held h = { 0 };
      struct data_sink sink = { held_write, held_drain, &h };
      struct qc_check_result res = { .struct_size = sizeof res };
      struct past_end pe = { 0 };
      struct io *io2;

      assert_int_equal (io_open_mem (NAME, base, base_len, &io), 0);
      assert_int_equal (qcow2_format.open (io, FMT_OPEN_WRITE, &st), 0);
      h.io = io;
      qcow2_format.set_data_sink (st, &sink);
      io_mem_set_write_limit (io, total ? n : UINT64_MAX);
      if (qcow2_format.pwrite (st, buf, sizeof buf, 40960) == 0)
        qcow2_format.flush (st);
      qcow2_format.set_data_sink (st, NULL);
      held_drain (&h);             /* frees what a failed flush left */
      qcow2_format.close (st);
      if (total == 0)
        {
          total = io_mem_writes (io);
          assert_true (total > 3);
          n = (uint64_t) -1;
          io_close (io);
          continue;
        }
      st = open_persisted (io, &io2, &len);
      pe.clusters = (len + 4095) / 4096;
      assert_int_equal (qcow2_format.check (st, 0, &res, count_past_end, &pe),
                        0);
      assert_int_equal (res.corruptions, 0);
      assert_int_equal (pe.count, 0);
      qcow2_format.close (st);
      io_close (io2);
    }
  free (base);
}

/* Flushes reaching the io, and writes since the last one: the ops of a
 * memory io with counting flush, pwrite, zero and truncate. */
static struct io_ops counting_ops;
static const struct io_ops *mem_ops;
static unsigned io_flushes, writes_since_flush;

static int
counting_flush (struct io *io)
{
  io_flushes++;
  writes_since_flush = 0;
  return mem_ops->flush (io);
}

static int
counting_pwrite (struct io *io, const void *buf, size_t n, uint64_t off)
{
  writes_since_flush++;
  return mem_ops->pwrite (io, buf, n, off);
}

static int
counting_zero (struct io *io, uint64_t off, uint64_t len)
{
  writes_since_flush++;
  return mem_ops->zero (io, off, len);
}

static int
counting_truncate (struct io *io, uint64_t size)
{
  writes_since_flush++;
  return mem_ops->truncate (io, size);
}

/* The syncs of one run through a writer of a new image opened with
 * FLAGS: NW MiB of data 5 MiB apart (over three L2 tables and two
 * refcount blocks at 10), a discard (a deferred free) when NW > 1, a
 * flush, after which nothing is written. The image must check clean and
 * read back; *IMG receives a copy of its bytes. */
static unsigned
syncs_of_run (unsigned flags, int nw, unsigned char **img, size_t *len)
{
  struct create_params p = {
    .size = 64 << 20, .version = 3, .cluster_size = 4096, .refcount_bits = 16,
  };
  struct qc_check_result res = { .struct_size = sizeof res };
  unsigned char *buf = malloc (1 << 20), *got = malloc (1 << 20);
  const unsigned char *d;
  struct io *io;
  void *st;
  int i;

  assert_non_null (buf);
  assert_non_null (got);
  assert_int_equal (io_open_mem (NAME, NULL, 0, &io), 0);
  assert_int_equal (qcow2_format.create (io, &p), 0);
  mem_ops = io->ops;
  counting_ops = *io->ops;
  counting_ops.flush = counting_flush;
  counting_ops.pwrite = counting_pwrite;
  counting_ops.zero = counting_zero;
  counting_ops.truncate = counting_truncate;
  io->ops = &counting_ops;
  assert_int_equal (qcow2_format.open (io, FMT_OPEN_WRITE | flags, &st), 0);
  io_flushes = 0;
  for (i = 0; i < nw; i++) {
    fill (buf, 1 << 20, (unsigned) i);
    assert_int_equal (qcow2_format.pwrite (st, buf, 1 << 20,
                                           (uint64_t) i * (5 << 20)), 0);
  }
  if (nw > 1)
    assert_int_equal (qcow2_format.discard (st, 5 << 20, 1 << 20), 0);
  assert_int_equal (qcow2_format.flush (st), 0);
  assert_int_equal (writes_since_flush, 0);
  qcow2_format.close (st);
  assert_int_equal (writes_since_flush, 0);
  assert_int_equal (qcow2_format.open (io, 0, &st), 0);
  assert_int_equal (qcow2_format.check (st, 0, &res, NULL, NULL), 0);
  for (i = 0; i < nw; i++) {
    fill (buf, 1 << 20, (unsigned) i);
    if (i == 1)
      memset (buf, 0, 1 << 20);
    assert_int_equal (qcow2_format.read (st, got, 1 << 20,
                                          (uint64_t) i * (5 << 20)), 0);
    assert_memory_equal (got, buf, 1 << 20);
  }
  qcow2_format.close (st);
  d = io_mem_data (io, len);
  *img = malloc (*len);
  assert_non_null (*img);
  memcpy (*img, d, *len);
  io_close (io);
  free (buf);
  free (got);
  return io_flushes;
}

/* A writer ordered as the crash rules say syncs between data, refcounts,
 * L2 tables, L1 and frees; one opened unordered (a copy's temporary
 * DEST) syncs once, at the flush, after its last write, and writes the
 * same image. Unordered with nothing written after open, the flush still
 * syncs what create wrote (regression: a shallow copy of an empty
 * overlay was renamed over DEST without any sync). */
static void
test_unordered_syncs_once (void **state)
{
  unsigned char *a, *b;
  size_t alen, blen;

  (void) state;
  assert_true (syncs_of_run (0, 10, &a, &alen) >= 3);
  assert_int_equal (syncs_of_run (FMT_OPEN_UNORDERED, 10, &b, &blen), 1);
  assert_int_equal (alen, blen);
  assert_memory_equal (a, b, alen);
  free (a);
  free (b);
  assert_int_equal (syncs_of_run (FMT_OPEN_UNORDERED, 0, &b, &blen), 1);
  free (b);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_cow_backing),
    cmocka_unit_test (test_subcluster),
    cmocka_unit_test (test_zero_v3),
    cmocka_unit_test (test_zero_v2),
    cmocka_unit_test (test_discard_frees),
    cmocka_unit_test (test_compressed),
    cmocka_unit_test (test_compressed_across_refblocks),
    cmocka_unit_test (test_refcount_widths),
    cmocka_unit_test (test_reftable_growth),
    cmocka_unit_test (test_l1_growth),
    cmocka_unit_test (test_resize_hides_backing),
    cmocka_unit_test (test_snapshot_cow),
    cmocka_unit_test (test_bitmaps_refused),
    cmocka_unit_test (test_dirty_refused),
    cmocka_unit_test (test_set_backing),
    cmocka_unit_test (test_crash_points),
    cmocka_unit_test (test_sink_drained_before_refcounts),
    cmocka_unit_test (test_unordered_syncs_once),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
