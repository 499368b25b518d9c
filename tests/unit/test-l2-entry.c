/* Unit tests for L1/L2 entry decoding, the L2 cache, and status()/read() on in-memory images. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "byte-order.h"
#include "errors.h"
#include "qchain.h"
#include "qcow2.h"

#define NAME "mem.qcow2"
#define C QCOW2_OFLAG_COMPRESSED
#define COPIED QCOW2_OFLAG_COPIED

static void
expect_error (int r, int err, const char *what)
{
  const char *msg = qc_get_error ();

  assert_int_equal (r, -err);
  assert_non_null (msg);
  if (strncmp (msg, NAME ": ", strlen (NAME) + 2) != 0 || !strstr (msg, what))
    fail_msg ("message \"%s\" does not name the image and \"%s\"", msg, what);
}

static struct qcow2_geom
geom (uint32_t version, uint32_t cluster_bits, bool extended,
      uint64_t file_size)
{
  struct qcow2_geom g = {
    .name = NAME, .version = version, .cluster_bits = cluster_bits,
    .extended_l2 = extended, .file_size = file_size,
  };
  return g;
}

/* ---- L1 entries ------------------------------------------------------ */

static void
test_l1_decode (void **state)
{
  struct qcow2_geom g = geom (3, 16, false, 0x100000);
  uint64_t off;

  assert_int_equal (qcow2_l1_decode (&g, 0, 0, &off), 0);
  assert_int_equal (off, 0);
  assert_int_equal (qcow2_l1_decode (&g, 0, COPIED, &off), 0);
  assert_int_equal (off, 0);
  assert_int_equal (qcow2_l1_decode (&g, 0, 0x30000 | COPIED, &off), 0);
  assert_int_equal (off, 0x30000);
  /* Reserved bits 56-62 and 0-8 are not part of the offset. */
  assert_int_equal (qcow2_l1_decode (&g, 0, (1ull << 60) | 0x30000 | 7, &off),
                    0);
  assert_int_equal (off, 0x30000);
  assert_int_equal (qcow2_l1_decode (&g, 1, 0xf0000, &off), 0);
  assert_int_equal (off, 0xf0000);
  expect_error (qcow2_l1_decode (&g, 5, 0x30200, &off), EINVAL,
                "misaligned L2 table offset 0x30200 in L1 entry 5");
  expect_error (qcow2_l1_decode (&g, 7, 0x100000, &off), EINVAL,
                "L1 entry 7 points past end of file");
  expect_error (qcow2_l1_decode (&g, 7, 0xf8000 | COPIED, &off), EINVAL,
                "misaligned");
}

/* ---- standard L2 entries --------------------------------------------- */

static void
test_standard_entries (void **state)
{
  struct qcow2_geom g = geom (3, 16, false, 0x100000);
  struct qcow2_geom g2 = geom (2, 16, false, 0x100000);
  struct qcow2_map m;

  assert_int_equal (qcow2_l2_classify (&g, 0, 0, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_UNALLOC);
  assert_false (m.has_offset);
  assert_int_equal (qcow2_l2_classify (&g, 0, COPIED, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_UNALLOC);
  assert_int_equal (qcow2_l2_classify (&g, 0, COPIED | 0x50000, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_DATA);
  assert_true (m.has_offset);
  assert_int_equal (m.host_off, 0x50000);
  assert_int_equal (qcow2_l2_classify (&g, 0, 0xf0000, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_DATA);
  assert_int_equal (m.host_off, 0xf0000);
  expect_error (qcow2_l2_classify (&g, 0x20000, 0x50200, 0, 0, &m), EINVAL,
                "misaligned host offset 0x50200");
  expect_error (qcow2_l2_classify (&g, 0x20000, 0x100000, 0, 0, &m), EINVAL,
                "past end of file");

  assert_int_equal (qcow2_l2_classify (&g, 0, QCOW2_OFLAG_ZERO, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_ZERO);
  assert_false (m.has_offset);
  /* A preallocated zero cluster is never read: past EOF is fine. */
  assert_int_equal (qcow2_l2_classify (&g, 0, QCOW2_OFLAG_ZERO | 0x200000,
                                       0, 0, &m), 0);
  assert_int_equal (m.type, EXT_ZERO);
  assert_true (m.has_offset);
  assert_int_equal (m.host_off, 0x200000);
  expect_error (qcow2_l2_classify (&g, 0, QCOW2_OFLAG_ZERO | 0x50400, 0, 0,
                                   &m), EINVAL, "misaligned");

  expect_error (qcow2_l2_classify (&g2, 0x30000, QCOW2_OFLAG_ZERO, 0, 0, &m),
                EINVAL, "zero flag set in a version 2 image");
  assert_int_equal (qcow2_l2_classify (&g2, 0, 0x50000, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_DATA);
}

/* ---- compressed descriptors ------------------------------------------ */

static void
check_split (uint32_t cb, uint64_t off, uint64_t nb)
{
  unsigned x = 62 - (cb - 8);
  uint64_t entry = C | (nb << x) | off, o, n;

  qcow2_compressed_split (cb, entry, &o, &n);
  assert_int_equal (o, off);
  assert_int_equal (n, nb);
  qcow2_compressed_split (cb, entry | COPIED, &o, &n);
  assert_int_equal (o, off);
  assert_int_equal (n, nb);
}

static void
test_compressed_split (void **state)
{
  uint64_t o, n;

  /* 512 B clusters: offset bits 0-60, one bit of sector count (61). */
  check_split (9, 0, 0);
  check_split (9, (1ull << 61) - 1, 1);
  check_split (9, 0x123456789, 0);
  qcow2_compressed_split (9, C | (1ull << 61) | 0x200, &o, &n);
  assert_int_equal (o, 0x200);
  assert_int_equal (n, 1);

  /* 64 KiB clusters: offset bits 0-53, sector count bits 54-61. */
  check_split (16, (1ull << 54) - 1, 255);
  check_split (16, 1ull << 53, 0);
  check_split (16, 0x123456789, 5);
  qcow2_compressed_split (16, C | (1ull << 54) | 0x1000, &o, &n);
  assert_int_equal (o, 0x1000);
  assert_int_equal (n, 1);
  qcow2_compressed_split (16, 0x7fffffffffffffffull, &o, &n);
  assert_int_equal (o, (1ull << 54) - 1);
  assert_int_equal (n, 255);

  /* 2 MiB clusters: offset bits 0-48, sector count bits 49-61. */
  check_split (21, (1ull << 49) - 1, 8191);
  check_split (21, 0xabcdef01, 4096);
  qcow2_compressed_split (21, C | (1ull << 49), &o, &n);
  assert_int_equal (o, 0);
  assert_int_equal (n, 1);
  qcow2_compressed_split (21, C | ((1ull << 49) - 1), &o, &n);
  assert_int_equal (o, (1ull << 49) - 1);
  assert_int_equal (n, 0);
}

static void
test_compressed_classify (void **state)
{
  struct qcow2_geom g = geom (3, 16, false, 0x100000);
  struct qcow2_geom g9 = geom (3, 9, false, 1ull << 40);
  struct qcow2_geom g21 = geom (3, 21, false, 1ull << 40);
  struct qcow2_map m;

  assert_int_equal (qcow2_l2_classify (&g, 0, C | (3ull << 54) | 0x80123,
                                       0, 0, &m), 0);
  assert_int_equal (m.type, EXT_COMPRESSED);
  assert_false (m.has_offset);
  assert_int_equal (m.comp_off, 0x80123);
  assert_int_equal (m.comp_len, 4 * 512 - 0x123);
  /* Running past the end of the file: clipped. */
  assert_int_equal (qcow2_l2_classify (&g, 0, C | (10ull << 54) | 0xfff00,
                                       0, 0, &m), 0);
  assert_int_equal (m.comp_len, 0x100);
  /* Starting past it: an error. */
  expect_error (qcow2_l2_classify (&g, 0x40000, C | 0x100000, 0, 0, &m),
                EINVAL, "starts past end of file");

  assert_int_equal (qcow2_l2_classify (&g9, 0, C | (1ull << 61) | 0x1ff,
                                       0, 0, &m), 0);
  assert_int_equal (m.comp_off, 0x1ff);
  assert_int_equal (m.comp_len, 2 * 512 - 0x1ff);
  /* 512 B clusters leave room for offset bits past 55: must be zero. */
  expect_error (qcow2_l2_classify (&g9, 0, C | (1ull << 57), 0, 0, &m),
                EINVAL, "beyond 56 bits");

  /* 2 MiB clusters: at most 8192 sectors, two clusters of input. */
  assert_int_equal (qcow2_l2_classify (&g21, 0, C | (8191ull << 49) | 0x400,
                                       0, 0, &m), 0);
  assert_int_equal (m.comp_off, 0x400);
  assert_int_equal (m.comp_len, 4u << 20);
}

/* ---- extended L2 entries --------------------------------------------- */

static void
test_extended_entries (void **state)
{
  struct qcow2_geom g = geom (3, 16, true, 0x100000);
  struct qcow2_map m;
  const uint64_t sc = 2048;

  /* Subcluster 3 allocated, 5 zero, the rest not here. */
  uint64_t bm = (1ull << 3) | (1ull << (32 + 5));
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x50000, bm, 3, &m), 0);
  assert_int_equal (m.type, EXT_DATA);
  assert_int_equal (m.host_off, 0x50000 + 3 * sc);
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x50000, bm, 5, &m), 0);
  assert_int_equal (m.type, EXT_ZERO);
  assert_true (m.has_offset);
  assert_int_equal (m.host_off, 0x50000 + 5 * sc);
  /* Unallocated, but the cluster is there: qemu reports its offset. */
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x50000, bm, 4, &m), 0);
  assert_int_equal (m.type, EXT_UNALLOC);
  assert_true (m.has_offset);
  assert_int_equal (m.host_off, 0x50000 + 4 * sc);
  /* Bit 0 of the first word is no zero flag here. */
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x50001, 1, 0, &m), 0);
  assert_int_equal (m.type, EXT_DATA);

  /* Allocated and zero at once: corrupt, whichever subcluster is asked. */
  bm = (1ull << 6) | (1ull << (32 + 6));
  expect_error (qcow2_l2_classify (&g, 0x70000, 0x50000, bm, 0, &m), EINVAL,
                "both allocated and zero");
  expect_error (qcow2_l2_classify (&g, 0x70000, 0, bm, 0, &m), EINVAL,
                "both allocated and zero");

  /* No host cluster: zero bits read as zero, alloc bits are corrupt. */
  assert_int_equal (qcow2_l2_classify (&g, 0, 0, 0xffffffff00000000ull, 31,
                                       &m), 0);
  assert_int_equal (m.type, EXT_ZERO);
  assert_false (m.has_offset);
  assert_int_equal (qcow2_l2_classify (&g, 0, 0, 0, 31, &m), 0);
  assert_int_equal (m.type, EXT_UNALLOC);
  expect_error (qcow2_l2_classify (&g, 0, 0, 1u << 9, 0, &m), EINVAL,
                "without a host cluster");

  /* Host cluster past EOF matters only for allocated subclusters. */
  expect_error (qcow2_l2_classify (&g, 0, 0x100000, 1, 0, &m), EINVAL,
                "past end of file");
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x100000, 1ull << 32, 0, &m),
                    0);
  assert_int_equal (m.type, EXT_ZERO);
  expect_error (qcow2_l2_classify (&g, 0, 0x50800, 1, 0, &m), EINVAL,
                "misaligned");
  expect_error (qcow2_l2_classify (&g, 0, 0x50800, 0, 0, &m), EINVAL,
                "misaligned");
  assert_int_equal (qcow2_l2_classify (&g, 0, 0x100000, 0, 0, &m), 0);
  assert_int_equal (m.type, EXT_UNALLOC);
  assert_true (m.has_offset);

  /* Compressed clusters have no subclusters. */
  assert_int_equal (qcow2_l2_classify (&g, 0, C | 0x80000, 0, 7, &m), 0);
  assert_int_equal (m.type, EXT_COMPRESSED);
  expect_error (qcow2_l2_classify (&g, 0, C | 0x80000, 1, 0, &m), EINVAL,
                "non-zero subcluster bitmap");
}

/* ---- L2 cache -------------------------------------------------------- */

static void
test_l2_cache (void **state)
{
  struct qcow2_l2_cache c;
  unsigned char *file = calloc (8, 512);
  const unsigned char *t;
  struct io *io;
  unsigned i;

  assert_int_equal (qcow2_l2_cache_init (&c, 2u << 20), 0);
  assert_int_equal (c.max_slots, QCOW2_L2_CACHE_BYTES / (2u << 20));
  qcow2_l2_cache_limit (&c, 1);          /* never below the minimum */
  assert_int_equal (c.max_slots, QCOW2_L2_CACHE_MIN_SLOTS);
  qcow2_l2_cache_limit (&c, 1000);       /* and never grows */
  assert_int_equal (c.max_slots, QCOW2_L2_CACHE_MIN_SLOTS);
  qcow2_l2_cache_free (&c);
  assert_int_equal (qcow2_l2_cache_init (&c, 4096), 0);
  assert_int_equal (c.max_slots, 1024);
  /* Only a few slots until tables are read. */
  assert_int_equal (c.nb_slots, QCOW2_L2_CACHE_MIN_SLOTS);
  qcow2_l2_cache_free (&c);

  for (i = 1; i < 8; i++)
    memset (file + i * 512, (int) i, 512);
  assert_int_equal (io_open_mem (NAME, file, 8 * 512, &io), 0);
  assert_int_equal (qcow2_l2_cache_init (&c, 512), 0);
  qcow2_l2_cache_limit (&c, 4);  /* use only four slots */
  for (i = 1; i <= 5; i++)
    {
      assert_int_equal (qcow2_l2_cache_get (&c, io, i * 512, &t), 0);
      assert_int_equal (t[0], i);
    }
  assert_int_equal (c.nb_reads, 5);
  for (i = 2; i <= 5; i++)
    assert_int_equal (qcow2_l2_cache_get (&c, io, i * 512, &t), 0);
  assert_int_equal (c.nb_reads, 5);
  /* Table 1 was the least recently used: evicted, read again, and it
   * pushes out table 2. */
  assert_int_equal (qcow2_l2_cache_get (&c, io, 512, &t), 0);
  assert_int_equal (t[0], 1);
  assert_int_equal (c.nb_reads, 6);
  assert_int_equal (qcow2_l2_cache_get (&c, io, 5 * 512, &t), 0);
  assert_int_equal (c.nb_reads, 6);
  assert_int_equal (qcow2_l2_cache_get (&c, io, 2 * 512, &t), 0);
  assert_int_equal (c.nb_reads, 7);
  qcow2_l2_cache_drop (&c, 2 * 512);
  assert_int_equal (qcow2_l2_cache_get (&c, io, 2 * 512, &t), 0);
  assert_int_equal (c.nb_reads, 8);
  qcow2_l2_cache_free (&c);

  /* Grown on misses up to its bound, keeping every table read so far;
   * then least recently used out; a lower limit drops the extra slots. */
  assert_int_equal (qcow2_l2_cache_init_n (&c, 512, 6), 0);
  assert_int_equal (c.nb_slots, QCOW2_L2_CACHE_MIN_SLOTS);
  for (i = 1; i <= 6; i++)
    assert_int_equal (qcow2_l2_cache_get (&c, io, i * 512, &t), 0);
  assert_int_equal (c.nb_slots, 6);
  for (i = 1; i <= 6; i++)
    {
      assert_int_equal (qcow2_l2_cache_get (&c, io, i * 512, &t), 0);
      assert_int_equal (t[0], i);
    }
  assert_int_equal (c.nb_reads, 6);
  assert_int_equal (qcow2_l2_cache_get (&c, io, 7 * 512, &t), 0);
  assert_int_equal (c.nb_slots, 6);
  assert_int_equal (c.nb_reads, 7);
  assert_int_equal (qcow2_l2_cache_get (&c, io, 2 * 512, &t), 0);
  assert_int_equal (c.nb_reads, 7);      /* 1 went, 2 stayed */
  assert_int_equal (qcow2_l2_cache_get (&c, io, 512, &t), 0);
  assert_int_equal (c.nb_reads, 8);
  qcow2_l2_cache_limit (&c, 4);
  assert_int_equal (c.nb_slots, 4);
  assert_int_equal (c.max_slots, 4);
  for (i = 1; i <= 7; i++)
    {
      assert_int_equal (qcow2_l2_cache_get (&c, io, i * 512, &t), 0);
      assert_int_equal (t[0], i);
    }
  assert_int_equal (c.nb_slots, 4);
  qcow2_l2_cache_free (&c);
  io_close (io);
  free (file);
}

/* ---- images in memory ------------------------------------------------ */

/* Cluster 0 header, 1 refcount table, 2 refcount block, 3 L1, then what
 * the test adds. */
struct img {
  unsigned char *buf;
  size_t len;
  uint32_t cb;
  uint32_t cs;
  struct io *io;
  void *st;
};

static void
img_init (struct img *m, uint32_t cb, uint64_t size, uint64_t incompat,
          uint8_t ctype, size_t cap)
{
  struct qcow2_header h;
  unsigned l2_bits = cb - ((incompat & QCOW2_INCOMPAT_EXTL2) ? 4 : 3);
  uint64_t cover = 1ull << (cb + l2_bits);

  memset (m, 0, sizeof *m);
  m->cb = cb;
  m->cs = 1u << cb;
  m->buf = calloc (1, cap);
  assert_non_null (m->buf);
  m->len = 4 * (size_t) m->cs;
  memset (&h, 0, sizeof h);
  h.magic = QCOW2_MAGIC;
  h.version = 3;
  h.cluster_bits = cb;
  h.size = size;
  h.l1_size = (uint32_t) ((size + cover - 1) / cover);
  h.l1_table_offset = 3 * (uint64_t) m->cs;
  h.refcount_table_offset = m->cs;
  h.refcount_table_clusters = 1;
  h.incompatible_features = incompat;
  h.refcount_order = 4;
  h.header_length = 112;
  h.compression_type = ctype;
  qcow2_header_encode (&h, m->buf);
  put_be64 (m->buf + m->cs, 2 * (uint64_t) m->cs);
}

/* Append len bytes (aligned to align) and return their offset. */
static uint64_t
img_append (struct img *m, const void *data, size_t len, size_t align)
{
  size_t off = (m->len + align - 1) / align * align;

  memcpy (m->buf + off, data, len);
  m->len = off + len;
  return off;
}

static uint64_t
img_append_cluster (struct img *m, int fill)
{
  size_t off = (m->len + m->cs - 1) / m->cs * m->cs;

  memset (m->buf + off, fill, m->cs);
  m->len = off + m->cs;
  return off;
}

static void
set_l1 (struct img *m, unsigned i, uint64_t entry)
{
  put_be64 (m->buf + 3 * m->cs + 8 * i, entry);
}

static void
set_l2 (struct img *m, uint64_t l2, unsigned i, uint64_t entry)
{
  put_be64 (m->buf + l2 + 8 * i, entry);
}

static void
img_open (struct img *m)
{
  clear_error ();
  assert_int_equal (io_open_mem (NAME, m->buf, m->len, &m->io), 0);
  if (qcow2_format.open (m->io, 0, &m->st) < 0)
    fail_msg ("open: %s", qc_get_error ());
}

static void
img_free (struct img *m)
{
  if (m->st)
    qcow2_format.close (m->st);
  if (m->io)
    io_close (m->io);
  free (m->buf);
}

static void
expect_extent (struct img *m, uint64_t off, uint64_t len, uint64_t elen,
               enum ext_type type, bool has_offset, uint64_t host)
{
  struct layer_extent e;

  if (qcow2_format.status (m->st, off, len, &e) < 0)
    fail_msg ("status at 0x%llx: %s", (unsigned long long) off,
              qc_get_error ());
  assert_int_equal (e.type, type);
  assert_int_equal (e.len, elen);
  assert_int_equal (e.has_offset, has_offset);
  if (has_offset)
    assert_int_equal (e.host_off, host);
}

static size_t
deflate_raw (const unsigned char *src, size_t n, unsigned char *dst,
             size_t cap)
{
  z_stream z;

  memset (&z, 0, sizeof z);
  assert_int_equal (deflateInit2 (&z, 6, Z_DEFLATED, -12, 8,
                                  Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = (unsigned char *) src;
  z.avail_in = (uInt) n;
  z.next_out = dst;
  z.avail_out = (uInt) cap;
  assert_int_equal (deflate (&z, Z_FINISH), Z_STREAM_END);
  deflateEnd (&z);
  return cap - z.avail_out;
}

/* The first half and the second half as two zstd frames back to back. */
static size_t
zstd_two_frames (const unsigned char *src, size_t n, unsigned char *dst,
                 size_t cap)
{
  size_t a = ZSTD_compress (dst, cap, src, n / 2, 3), b;

  assert_false (ZSTD_isError (a));
  b = ZSTD_compress (dst + a, cap - a, src + n / 2, n - n / 2, 3);
  assert_false (ZSTD_isError (b));
  return a + b;
}

static uint64_t
compressed_entry (uint32_t cb, uint64_t off, uint64_t len, uint64_t extra)
{
  uint64_t nb = (off + len - 1) / 512 - off / 512 + extra;

  return C | (nb << (62 - (cb - 8))) | off;
}

static void
pattern (unsigned char *p, size_t n, unsigned seed)
{
  size_t i;

  for (i = 0; i < n; i++)
    p[i] = (unsigned char) ("qcow2 compressed "[(i / 7 + seed) % 17]
                            + i / 1000);
}

/*
 * 4 KiB clusters, 64 KiB guest. Guest clusters: 0,1 data contiguous;
 * 2 data elsewhere; 3,4 zero; 5 zero preallocated; 6,7 unallocated;
 * 8,9 compressed (9's data right behind 8's and running past EOF);
 * 10-15 unallocated.
 */
static void
status_read_image (bool zstd, struct img *m, unsigned char *expect)
{
  const uint32_t cb = 12, cs = 4096;
  unsigned char c8[4096], c9[4096], z[3 * 4096];
  uint64_t l2, d0, d1, d2, d5, o8, o9;
  size_t n8, n9;

  img_init (m, cb, 65536, zstd ? QCOW2_INCOMPAT_COMPRESSION : 0,
            zstd ? QCOW2_COMPRESS_ZSTD : 0, 32 * cs);
  l2 = img_append_cluster (m, 0);
  set_l1 (m, 0, l2 | COPIED);
  d0 = img_append_cluster (m, 'a');
  d1 = img_append_cluster (m, 'b');
  img_append_cluster (m, 0);
  d2 = img_append_cluster (m, 'c');
  d5 = img_append_cluster (m, 'x');
  pattern (c8, cs, 0);
  pattern (c9, cs, 5);
  /* Compressed data starts anywhere: here 17 bytes into a cluster. */
  m->len += 17;
  if (zstd)
    {
      n8 = zstd_two_frames (c8, cs, z, sizeof z);
      o8 = img_append (m, z, n8, 1);
      n9 = ZSTD_compress (z, sizeof z, c9, cs, 3);
      assert_false (ZSTD_isError (n9));
    }
  else
    {
      n8 = deflate_raw (c8, cs, z, sizeof z);
      o8 = img_append (m, z, n8, 1);
      n9 = deflate_raw (c9, cs, z, sizeof z);
    }
  o9 = img_append (m, z, n9, 1);
  set_l2 (m, l2, 0, d0 | COPIED);
  set_l2 (m, l2, 1, d1 | COPIED);
  set_l2 (m, l2, 2, d2 | COPIED);
  set_l2 (m, l2, 3, QCOW2_OFLAG_ZERO);
  set_l2 (m, l2, 4, QCOW2_OFLAG_ZERO);
  set_l2 (m, l2, 5, d5 | QCOW2_OFLAG_ZERO | COPIED);
  set_l2 (m, l2, 7, COPIED);
  set_l2 (m, l2, 8, compressed_entry (cb, o8, n8, 0));
  set_l2 (m, l2, 9, compressed_entry (cb, o9, n9, 3));

  memset (expect, 0, 65536);
  memset (expect, 'a', cs);
  memset (expect + cs, 'b', cs);
  memset (expect + 2 * cs, 'c', cs);
  memcpy (expect + 8 * cs, c8, cs);
  memcpy (expect + 9 * cs, c9, cs);
  img_open (m);
}

static void
status_read (bool zstd)
{
  struct img m;
  unsigned char expect[65536], got[65536];
  const struct qcow2_state *s;
  uint64_t d0 = 5 * 4096;

  status_read_image (zstd, &m, expect);
  s = m.st;
  expect_extent (&m, 0, 65536, 8192, EXT_DATA, true, d0);
  expect_extent (&m, 8192, 65536 - 8192, 4096, EXT_DATA, true, 8 * 4096);
  expect_extent (&m, 12288, 65536 - 12288, 8192, EXT_ZERO, false, 0);
  expect_extent (&m, 20480, 65536 - 20480, 4096, EXT_ZERO, true, 9 * 4096);
  expect_extent (&m, 24576, 65536 - 24576, 8192, EXT_UNALLOC, false, 0);
  expect_extent (&m, 32768, 65536 - 32768, 8192, EXT_COMPRESSED, false, 0);
  expect_extent (&m, 40960, 65536 - 40960, 24576, EXT_UNALLOC, false, 0);
  /* Mid-cluster and length-limited. */
  expect_extent (&m, 4096 + 100, 100, 100, EXT_DATA, true, d0 + 4096 + 100);
  expect_extent (&m, 20480 + 1, 4000, 4000, EXT_ZERO, true, 9 * 4096 + 1);
  expect_extent (&m, 33000, 1000, 1000, EXT_COMPRESSED, false, 0);
  assert_int_equal (s->l2.nb_reads, 1);

  memset (got, 0xee, sizeof got);
  assert_int_equal (qcow2_format.read (m.st, got, sizeof got, 0), 0);
  assert_memory_equal (got, expect, sizeof got);
  memset (got, 0xee, sizeof got);
  assert_int_equal (qcow2_format.read (m.st, got, 10000, 33000), 0);
  assert_memory_equal (got, expect + 33000, 10000);
  assert_int_equal (qcow2_format.read (m.st, got, 1, 36863), 0);
  assert_int_equal (got[0], expect[36863]);
  assert_int_equal (qcow2_format.read (m.st, got, 5000, 3000), 0);
  assert_memory_equal (got, expect + 3000, 5000);
  assert_int_equal (s->l2.nb_reads, 1);
  img_free (&m);
}

static void
test_status_read_zlib (void **state)
{
  status_read (false);
}

static void
test_status_read_zstd (void **state)
{
  status_read (true);
}

static void
test_decompress_errors (void **state)
{
  struct img m;
  unsigned char expect[65536], got[4096];
  unsigned char half[1000], z[4096];
  uint64_t e8, o;
  size_t n;

  /* Garbage instead of deflate data. */
  status_read_image (false, &m, expect);
  e8 = get_be64 (m.buf + 4 * 4096 + 8 * 8);
  qcow2_format.close (m.st);
  io_close (m.io);
  memset (m.buf + (e8 & 0xffffffffff), 0xff, 64);
  img_open (&m);
  expect_error (qcow2_format.read (m.st, got, 100, 8 * 4096), EIO, "zlib");
  /* The next cluster is fine and reads. */
  assert_int_equal (qcow2_format.read (m.st, got, 4096, 9 * 4096), 0);
  assert_memory_equal (got, expect + 9 * 4096, 4096);
  img_free (&m);

  /* Too little data: the stream ends before the cluster is full. */
  status_read_image (true, &m, expect);
  qcow2_format.close (m.st);
  io_close (m.io);
  memset (half, 0, sizeof half);
  n = ZSTD_compress (z, sizeof z, half, sizeof half, 3);
  assert_false (ZSTD_isError (n));
  o = img_append (&m, z, n, 1);
  set_l2 (&m, 4 * 4096, 10, compressed_entry (12, o, n, 0));
  img_open (&m);
  expect_error (qcow2_format.read (m.st, got, 100, 10 * 4096), EIO,
                "decompresses to 1000 bytes");
  img_free (&m);
}

/* 16 KiB clusters with 512-byte subclusters. */
static void
test_extended_status (void **state)
{
  struct img m;
  const uint32_t cb = 14, cs = 1u << cb;
  uint64_t l2, d0;
  unsigned char got[4096];
  struct layer_extent e;

  img_init (&m, cb, 4 * cs, QCOW2_INCOMPAT_EXTL2, 0, 16 * cs);
  l2 = img_append_cluster (&m, 0);
  set_l1 (&m, 0, l2 | COPIED);
  d0 = img_append_cluster (&m, 'd');
  set_l2 (&m, l2, 0, d0 | COPIED);
  set_l2 (&m, l2, 1, 0x3ull | (0xcull << 32));
  set_l2 (&m, l2, 3, 0xffffffff00000000ull);
  set_l2 (&m, l2, 4, d0 | COPIED);
  set_l2 (&m, l2, 5, 1ull | (1ull << 32));
  img_open (&m);

  expect_extent (&m, 0, 4 * cs, 1024, EXT_DATA, true, d0);
  expect_extent (&m, 1024, 4 * cs - 1024, 1024, EXT_ZERO, true, d0 + 1024);
  expect_extent (&m, 2048, 4 * cs - 2048, cs - 2048, EXT_UNALLOC, true,
                 d0 + 2048);
  /* A bad entry ends the extent before it; asking there fails. */
  expect_extent (&m, cs, 3 * cs, cs, EXT_ZERO, false, 0);
  expect_error (qcow2_format.status (m.st, 2 * cs, cs, &e), EINVAL,
                "both allocated and zero");

  assert_int_equal (qcow2_format.read (m.st, got, 4096, 0), 0);
  assert_memory_equal (got, "dddd", 4);
  assert_int_equal (got[1023], 'd');
  assert_int_equal (got[1024], 0);
  assert_int_equal (got[4095], 0);
  img_free (&m);
}

/* 512 B clusters: an L2 table covers 32 KiB; walk 8 tables in small steps. */
static void
test_l2_read_once (void **state)
{
  struct img m;
  const uint32_t cb = 9, cs = 512;
  uint64_t l2[8], data, off = 0;
  const struct qcow2_state *s;
  struct layer_extent e;
  unsigned i, j, nb = 0;

  img_init (&m, cb, 8 * 32768, 0, 0, 64 * 1024);
  for (i = 0; i < 8; i++)
    {
      l2[i] = img_append_cluster (&m, 0);
      set_l1 (&m, i, l2[i] | COPIED);
    }
  data = img_append_cluster (&m, 'z');
  for (i = 0; i < 8; i++)
    for (j = 0; j < 64; j += 2)
      set_l2 (&m, l2[i], j, data | COPIED);
  img_open (&m);
  s = m.st;
  while (off < 8 * 32768)
    {
      assert_int_equal (qcow2_format.status (m.st, off, 8 * 32768 - off, &e),
                        0);
      assert_int_equal (e.len, cs);
      assert_int_equal (e.type, nb % 2 ? EXT_UNALLOC : EXT_DATA);
      off += e.len;
      nb++;
    }
  assert_int_equal (nb, 8 * 64);
  assert_int_equal (s->l2.nb_reads, 8);
  img_free (&m);
}

/* A read-only open of a 2 MiB-cluster image caches 4 KiB slices of its
 * 2 MiB L2 table: reads one slice per region asked about, and an extent
 * still runs across slice ends. */
static void
test_l2_slices (void **state)
{
  struct img m;
  const uint32_t cb = 21;
  const uint64_t cs = 1ull << cb, far = 200000;   /* slice 390 of 512 */
  uint64_t l2, data;
  const struct qcow2_state *s;

  img_init (&m, cb, far * cs + 8 * cs, 0, 0, 7 * (size_t) cs);
  l2 = img_append_cluster (&m, 0);
  set_l1 (&m, 0, l2 | COPIED);
  data = img_append_cluster (&m, 'd');
  set_l2 (&m, l2, 5, data | COPIED);
  set_l2 (&m, l2, far, data | COPIED);
  img_open (&m);
  s = m.st;
  assert_int_equal (s->l2.table_size, QCOW2_L2_SLICE);
  expect_extent (&m, 0, 64 * cs, 5 * cs, EXT_UNALLOC, false, 0);
  expect_extent (&m, 5 * cs, cs, cs, EXT_DATA, true, data);
  assert_int_equal (s->l2.nb_reads, 1);
  expect_extent (&m, far * cs + 7, cs, cs - 7, EXT_DATA, true, data + 7);
  assert_int_equal (s->l2.nb_reads, 2);
  /* Clusters 6 .. far-1: over the end of 390 slices. */
  expect_extent (&m, 6 * cs, (far + 8 - 6) * cs, (far - 6) * cs, EXT_UNALLOC,
                 false, 0);
  img_free (&m);
}

/* Bad L1 entries fail at first use with a clear message. */
static void
test_bad_l1_at_use (void **state)
{
  struct img m;
  struct layer_extent e;
  unsigned char buf[16];

  /* 64 KiB clusters: one L1 entry covers 512 MiB. */
  img_init (&m, 16, 4ull << 29, 0, 0, 6 * 65536);
  img_append_cluster (&m, 0);
  set_l1 (&m, 1, 0x1000000);
  set_l1 (&m, 2, 0x30200 | COPIED);
  img_open (&m);
  expect_extent (&m, 0, 4ull << 29, 1ull << 29, EXT_UNALLOC, false, 0);
  expect_error (qcow2_format.status (m.st, 1ull << 29, 100, &e), EINVAL,
                "L1 entry 1 points past end of file");
  expect_error (qcow2_format.read (m.st, buf, sizeof buf, (2ull << 29) + 5),
                EINVAL, "misaligned L2 table offset");
  img_free (&m);
}

/* ---- refcounts ------------------------------------------------------- */

static void
put_refcount (unsigned char *b, unsigned order, uint64_t i, uint64_t v)
{
  switch (order)
    {
    case 6: put_be64 (b + 8 * i, v); break;
    case 5: put_be32 (b + 4 * i, (uint32_t) v); break;
    case 4: put_be16 (b + 2 * i, (uint16_t) v); break;
    case 3: b[i] = (unsigned char) v; break;
    default:
      b[(i << order) / 8] |= (unsigned char) (v << ((i << order) % 8));
      break;
    }
}

static void
test_refcounts (void **state)
{
  unsigned order;

  for (order = 0; order <= 6; order++)
    {
      struct img m;
      struct qcow2_header h;
      uint64_t mask = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
      uint64_t per_block = (4096ull * 8) >> order, i, rc;
      unsigned char *rb;
      bool yes = true;

      img_init (&m, 12, 1 << 20, 0, 0, 16 * 4096);
      qcow2_header_decode (m.buf, 112, &h);
      h.refcount_order = order;
      qcow2_header_encode (&h, m.buf);
      rb = m.buf + 2 * 4096;
      for (i = 0; i < per_block; i += 3)
        put_refcount (rb, order, i, (i * 7 + 1) & mask);
      /* Entry 1 of the table: none. Entry 2: a misaligned block. */
      put_be64 (m.buf + 4096 + 16, 0x2200);
      img_open (&m);
      for (i = 0; i < per_block; i += 3)
        {
          assert_int_equal (qcow2_get_refcount (m.st, i, &rc), 0);
          assert_int_equal (rc, (i * 7 + 1) & mask);
          assert_int_equal (qcow2_get_refcount (m.st, i + 1, &rc), 0);
          assert_int_equal (rc, 0);
        }
      assert_int_equal (qcow2_get_refcount (m.st, per_block + 5, &rc), 0);
      assert_int_equal (rc, 0);
      /* A read-only open loads only the table entries covering the file:
       * entry 2 (misaligned) is past them. */
      assert_int_equal (qcow2_get_refcount (m.st, 2 * per_block, &rc), 0);
      assert_int_equal (rc, 0);
      /* Past the table: 0. */
      assert_int_equal (qcow2_get_refcount (m.st, 512 * per_block, &rc), 0);
      assert_int_equal (rc, 0);
      /* In memory everything is allocated: never preallocated. */
      assert_int_equal (qcow2_metadata_preallocated (m.st, &yes), 0);
      assert_false (yes);
      img_free (&m);

      /* A misaligned block the file's clusters need. */
      img_init (&m, 12, 1 << 20, 0, 0, 16 * 4096);
      put_be64 (m.buf + 4096, 0x2200);
      img_open (&m);
      expect_error (qcow2_get_refcount (m.st, 0, &rc), EINVAL,
                    "misaligned refcount block offset 0x2200");
      img_free (&m);
    }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_l1_decode),
    cmocka_unit_test (test_standard_entries),
    cmocka_unit_test (test_compressed_split),
    cmocka_unit_test (test_compressed_classify),
    cmocka_unit_test (test_extended_entries),
    cmocka_unit_test (test_l2_cache),
    cmocka_unit_test (test_status_read_zlib),
    cmocka_unit_test (test_status_read_zstd),
    cmocka_unit_test (test_decompress_errors),
    cmocka_unit_test (test_extended_status),
    cmocka_unit_test (test_l2_read_once),
    cmocka_unit_test (test_l2_slices),
    cmocka_unit_test (test_bad_l1_at_use),
    cmocka_unit_test (test_refcounts),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
