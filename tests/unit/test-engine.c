/* Unit tests for the I/O engine, each run on io_uring (pool registered or not) and on the sync fallback. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine.h"

struct variant {
  const char *name;
  unsigned flags;
};

static const struct variant v_uring = { "io_uring", 0 };
static const struct variant v_uring_plain = { "io_uring, no fixed buffers",
                                              ENGINE_NO_FIXED };
static const struct variant v_sync = { "sync", ENGINE_NO_URING };

static char dir[4096];

/* ---- helpers */

/* A new engine for the variant; skips the test when io_uring is wanted
 * but the machine does not have it. */
static struct engine *
new_engine (void **state, unsigned depth, size_t buf_size, unsigned nbufs,
            unsigned flags)
{
  const struct variant *v = *state;
  struct engine *e;

  assert_int_equal (engine_new (depth, buf_size, nbufs, v->flags | flags, &e),
                    0);
  if (v->flags & ENGINE_NO_URING)
    assert_string_equal (engine_backend (e), "sync");
  else if (strcmp (engine_backend (e), "io_uring") != 0) {
    print_message ("io_uring unavailable here: skipping the %s variant\n",
                   v->name);
    engine_free (e);
    skip ();
  }
  return e;
}

static void
path_of (char *buf, size_t n, const char *name)
{
  snprintf (buf, n, "%s/%s", dir, name);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void
fill_random (unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    if (i % 8 == 0) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
    }
    p[i] = (unsigned char) (rng >> (8 * (i % 8)));
  }
}

/* Create `name` with `size` random bytes; returns an O_RDONLY fd. */
static int
make_file (const char *name, uint64_t size)
{
  char path[4200];
  unsigned char *buf = malloc (1 << 20);
  uint64_t off;
  int fd;

  assert_non_null (buf);
  path_of (path, sizeof path, name);
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert_true (fd >= 0);
  for (off = 0; off < size; off += 1 << 20) {
    size_t n = size - off < (1 << 20) ? size - off : (1 << 20);
    fill_random (buf, n);
    assert_int_equal (pwrite (fd, buf, n, off), (ssize_t) n);
  }
  free (buf);
  close (fd);
  fd = open (path, O_RDONLY);
  assert_true (fd >= 0);
  return fd;
}

static int
open_new (const char *name, int extra)
{
  char path[4200];

  path_of (path, sizeof path, name);
  return open (path, O_RDWR | O_CREAT | O_TRUNC | extra, 0644);
}

static void
assert_same_files (int a, int b)
{
  static char x[1 << 20], y[1 << 20];
  struct stat sa, sb;
  uint64_t off;

  assert_int_equal (fstat (a, &sa), 0);
  assert_int_equal (fstat (b, &sb), 0);
  assert_int_equal (sa.st_size, sb.st_size);
  for (off = 0; off < (uint64_t) sa.st_size; off += sizeof x) {
    ssize_t n = pread (a, x, sizeof x, off);
    assert_true (n > 0);
    assert_int_equal (pread (b, y, sizeof y, off), n);
    assert_memory_equal (x, y, n);
  }
}

/* ---- a read→write copy pipeline driven like the copy core will */

struct chunk {
  struct copy *c;
  uint64_t off;
  size_t len;
  void *buf;
  int reads, writes;             /* callbacks seen */
  int res;
};

struct copy {
  struct engine *e;
  int src, dst;
  uint64_t size;
  size_t chunk_size;
  unsigned nchunks, next, completed, errors;
  unsigned max_inflight;
  struct chunk *chunks;
};

static void
note_inflight (struct copy *c)
{
  if (engine_inflight (c->e) > c->max_inflight)
    c->max_inflight = engine_inflight (c->e);
}

static void
write_done (void *opaque, int res)
{
  struct chunk *k = opaque;

  k->writes++;
  if (res != (int) k->len)
    k->c->errors++;
  engine_put_buf (k->c->e, k->buf);
  k->c->completed++;
}

static void
read_done (void *opaque, int res)
{
  struct chunk *k = opaque;

  k->reads++;
  k->res = res;
  if (res != (int) k->len) {
    k->c->errors++;
    engine_put_buf (k->c->e, k->buf);
    k->c->completed++;
    return;
  }
  /* The read's slot is free again: this cannot be refused. */
  if (engine_write (k->c->e, k->c->dst, k->buf, k->len, k->off, write_done, k))
    k->c->errors++;
  note_inflight (k->c);
}

static void
run_copy (struct copy *c)
{
  unsigned i;

  c->nchunks = (c->size + c->chunk_size - 1) / c->chunk_size;
  c->chunks = calloc (c->nchunks, sizeof *c->chunks);
  assert_non_null (c->chunks);
  while (c->completed < c->nchunks) {
    void *buf;

    while (c->next < c->nchunks && engine_slots (c->e) > 0
           && (buf = engine_get_buf (c->e)) != NULL) {
      struct chunk *k = &c->chunks[c->next];

      k->c = c;
      k->off = (uint64_t) c->next++ * c->chunk_size;
      k->len = c->size - k->off < c->chunk_size ? c->size - k->off
                                                 : c->chunk_size;
      k->buf = buf;
      assert_int_equal (engine_read (c->e, c->src, buf, k->len, k->off,
                                     read_done, k), 0);
      note_inflight (c);
    }
    assert_int_equal (engine_submit (c->e), 0);
    assert_true (engine_wait (c->e, 1) >= 1);
  }
  assert_int_equal (engine_inflight (c->e), 0);
  assert_int_equal (c->errors, 0);
  for (i = 0; i < c->nchunks; i++) {
    assert_int_equal (c->chunks[i].reads, 1);
    assert_int_equal (c->chunks[i].writes, 1);
  }
  free (c->chunks);
}

/* 64 MiB and an odd tail, 1 MiB requests, 32 in flight. */
static void
copy_64m (void **state)
{
  struct copy c = { .size = (64u << 20) + 12345, .chunk_size = 1 << 20 };

  c.e = new_engine (state, 32, c.chunk_size, 32, 0);
  c.src = make_file ("copy-src", c.size);
  c.dst = open_new ("copy-dst", 0);
  assert_true (c.dst >= 0);
  run_copy (&c);
  print_message ("%s: max %u in flight, fixed buffers: %s\n",
                 engine_backend (c.e), c.max_inflight,
                 engine_fixed_bufs (c.e) ? "yes" : "no");
  assert_true (c.max_inflight >= 16);
  assert_true (c.max_inflight <= 32);
  assert_same_files (c.src, c.dst);
  engine_free (c.e);
  close (c.src);
  close (c.dst);
}

/* A pool small enough to register under the default RLIMIT_MEMLOCK, so the
 * fixed-buffer path is exercised where io_uring allows it. */
static void
copy_small_bufs (void **state)
{
  struct copy c = { .size = (4u << 20) + 777, .chunk_size = 64 << 10 };

  c.e = new_engine (state, 16, c.chunk_size, 16, 0);
  if (!(((const struct variant *) *state)->flags & (ENGINE_NO_URING
                                                    | ENGINE_NO_FIXED)))
    print_message ("fixed buffers registered: %s\n",
                   engine_fixed_bufs (c.e) ? "yes" : "no");
  c.src = make_file ("small-src", c.size);
  c.dst = open_new ("small-dst", 0);
  assert_true (c.dst >= 0);
  run_copy (&c);
  assert_int_equal (c.max_inflight, 16);
  assert_same_files (c.src, c.dst);
  engine_free (c.e);
  close (c.src);
  close (c.dst);
}

/* ---- single requests */

struct result {
  int calls;
  int res;
};

static void
record (void *opaque, int res)
{
  struct result *r = opaque;

  r->calls++;
  r->res = res;
}

static void
short_read_at_eof (void **state)
{
  struct engine *e = new_engine (state, 16, 0, 0, 0);
  struct result a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
  static char buf[4][16384];
  int fd = make_file ("eof", 10000);

  assert_int_equal (engine_read (e, fd, buf[0], 4096, 0, record, &a), 0);
  assert_int_equal (engine_read (e, fd, buf[1], 8192, 4096, record, &b), 0);
  assert_int_equal (engine_read (e, fd, buf[2], 100, 20000, record, &c), 0);
  assert_int_equal (engine_read (e, fd, buf[3], 10000, 0, record, &d), 0);
  assert_int_equal (engine_drain (e), 0);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.res, 4096);
  assert_int_equal (b.calls, 1);
  assert_int_equal (b.res, 10000 - 4096);
  assert_int_equal (c.calls, 1);
  assert_int_equal (c.res, 0);
  assert_int_equal (d.calls, 1);
  assert_int_equal (d.res, 10000);
  assert_memory_equal (buf[0], buf[3], 4096);
  assert_memory_equal (buf[1], buf[3] + 4096, 10000 - 4096);
  engine_free (e);
  close (fd);
}

static void
bad_fd_fails_once (void **state)
{
  struct engine *e = new_engine (state, 16, 0, 0, 0);
  struct result a = { 0 }, b = { 0 };
  char buf[512];
  int ro = make_file ("ro", 512);
  int closed = dup (ro);

  close (closed);
  assert_int_equal (engine_read (e, closed, buf, sizeof buf, 0, record, &a),
                    0);
  /* Writing through a read-only descriptor. */
  assert_int_equal (engine_write (e, ro, buf, sizeof buf, 0, record, &b), 0);
  assert_int_equal (engine_submit (e), 0);
  assert_int_equal (engine_drain (e), 0);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.res, -EBADF);
  assert_int_equal (b.calls, 1);
  assert_int_equal (b.res, -EBADF);
  assert_int_equal (engine_inflight (e), 0);
  engine_free (e);
  close (ro);
}

static void
fsync_completes (void **state)
{
  struct engine *e = new_engine (state, 16, 4096, 1, 0);
  struct result w = { 0 }, f = { 0 };
  char *buf = engine_get_buf (e);
  int fd = open_new ("fsync", 0);

  assert_true (fd >= 0);
  memset (buf, 'q', 4096);
  assert_int_equal (engine_write (e, fd, buf, 4096, 8192, record, &w), 0);
  assert_int_equal (engine_drain (e), 0);      /* the write before the flush */
  assert_int_equal (engine_fsync (e, fd, record, &f), 0);
  assert_int_equal (engine_wait (e, 1), 1);
  assert_int_equal (w.calls, 1);
  assert_int_equal (w.res, 4096);
  assert_int_equal (f.calls, 1);
  assert_int_equal (f.res, 0);
  assert_int_equal (lseek (fd, 0, SEEK_END), 8192 + 4096);
  engine_put_buf (e, buf);
  engine_free (e);
  close (fd);
}

/* ---- depth, chains of callbacks, drain */

static void
depth_limit (void **state)
{
  struct engine *e = new_engine (state, 16, 0, 0, 0);
  struct result r[17] = { { 0 } };
  static char buf[17][4096];
  int fd = make_file ("depth", 65536);
  unsigned i;

  for (i = 0; i < 16; i++)
    assert_int_equal (engine_read (e, fd, buf[i], 4096, i * 4096, record,
                                   &r[i]), 0);
  assert_int_equal (engine_slots (e), 0);
  assert_int_equal (engine_inflight (e), 16);
  assert_int_equal (engine_read (e, fd, buf[16], 4096, 0, record, &r[16]),
                    -EAGAIN);
  assert_int_equal (engine_submit (e), 0);
  assert_int_equal (engine_read (e, fd, buf[16], 4096, 0, record, &r[16]),
                    -EAGAIN);
  assert_true (engine_wait (e, 1) >= 1);
  assert_true (engine_slots (e) >= 1);
  assert_int_equal (engine_read (e, fd, buf[16], 4096, 0, record, &r[16]), 0);
  assert_int_equal (engine_drain (e), 0);
  for (i = 0; i < 17; i++) {
    assert_int_equal (r[i].calls, 1);
    assert_int_equal (r[i].res, 4096);
  }
  engine_free (e);
  close (fd);
}

/* read → write → fsync, each step queued by the previous one's callback,
 * with the engine full from the start. */
struct chain {
  struct engine *e;
  int src, dst;
  char *buf;
  uint64_t off;
  int step[3];
  int bad;
  unsigned *max_inflight;
};

static void
chain_note (struct chain *ch)
{
  if (engine_inflight (ch->e) > *ch->max_inflight)
    *ch->max_inflight = engine_inflight (ch->e);
}

static void
chain_fsync (void *opaque, int res)
{
  struct chain *ch = opaque;

  ch->step[2]++;
  ch->bad |= res != 0;
}

static void
chain_write (void *opaque, int res)
{
  struct chain *ch = opaque;

  ch->step[1]++;
  ch->bad |= res != 65536;
  ch->bad |= engine_fsync (ch->e, ch->dst, chain_fsync, ch) != 0;
  ch->bad |= engine_submit (ch->e) != 0;
  chain_note (ch);
}

static void
chain_read (void *opaque, int res)
{
  struct chain *ch = opaque;

  ch->step[0]++;
  ch->bad |= res != 65536;
  ch->bad |= engine_write (ch->e, ch->dst, ch->buf, 65536, ch->off,
                           chain_write, ch) != 0;
  /* Waiting from a callback would recurse: refused. */
  ch->bad |= engine_wait (ch->e, 1) != -EDEADLK;
  chain_note (ch);
}

static void
callbacks_queue_followups (void **state)
{
  struct engine *e = new_engine (state, 16, 65536, 16, 0);
  struct chain ch[16];
  unsigned i, max_inflight = 0;
  int src = make_file ("chain-src", 16 * 65536);
  int dst = open_new ("chain-dst", 0);

  assert_true (dst >= 0);
  for (i = 0; i < 16; i++) {
    ch[i] = (struct chain) { .e = e, .src = src, .dst = dst,
                             .buf = engine_get_buf (e), .off = i * 65536,
                             .max_inflight = &max_inflight };
    assert_non_null (ch[i].buf);
    assert_int_equal (engine_read (e, src, ch[i].buf, 65536, ch[i].off,
                                   chain_read, &ch[i]), 0);
  }
  assert_null (engine_get_buf (e));
  assert_int_equal (engine_submit (e), 0);
  assert_int_equal (engine_drain (e), 0);
  assert_int_equal (engine_inflight (e), 0);
  assert_true (max_inflight <= 16);
  for (i = 0; i < 16; i++) {
    assert_int_equal (ch[i].step[0], 1);
    assert_int_equal (ch[i].step[1], 1);
    assert_int_equal (ch[i].step[2], 1);
    assert_int_equal (ch[i].bad, 0);
    engine_put_buf (e, ch[i].buf);
  }
  assert_int_equal (engine_free_bufs (e), 16);
  assert_same_files (src, dst);
  engine_free (e);
  close (src);
  close (dst);
}

static void
drain_empties (void **state)
{
  struct engine *e = new_engine (state, 64, 0, 0, 0);
  struct result r[64] = { { 0 } };
  static char buf[64][8192];
  int fd = make_file ("drain", 64 * 8192);
  unsigned i;

  assert_int_equal (engine_drain (e), 0);      /* nothing: returns at once */
  for (i = 0; i < 64; i++)
    assert_int_equal (engine_read (e, fd, buf[i], 8192, i * 8192, record,
                                   &r[i]), 0);
  assert_int_equal (engine_drain (e), 0);      /* submits by itself */
  assert_int_equal (engine_inflight (e), 0);
  assert_int_equal (engine_slots (e), 64);
  for (i = 0; i < 64; i++) {
    assert_int_equal (r[i].calls, 1);
    assert_int_equal (r[i].res, 8192);
  }
  assert_int_equal (engine_wait (e, 5), 0);    /* nothing in flight */
  engine_free (e);
  close (fd);
}

/* ---- abort */

static void
cancel_all (void **state)
{
  struct engine *e = new_engine (state, 32, 0, 0, 0);
  struct result r[32] = { { 0 } };
  static char buf[32][65536];
  int fd = make_file ("cancel", 32 * 65536);
  unsigned i, ok = 0, cancelled = 0;

  /* Half started, half only queued. */
  for (i = 0; i < 32; i++) {
    assert_int_equal (engine_read (e, fd, buf[i], 65536, i * 65536, record,
                                   &r[i]), 0);
    if (i == 15)
      assert_int_equal (engine_submit (e), 0);
  }
  assert_int_equal (engine_cancel_all (e), 0);
  assert_int_equal (engine_inflight (e), 0);
  for (i = 0; i < 32; i++) {
    assert_int_equal (r[i].calls, 1);
    if (r[i].res == -ECANCELED)
      cancelled++;
    else if (r[i].res == 65536)
      ok++;
  }
  assert_int_equal (ok + cancelled, 32);
  assert_true (cancelled >= 16);
  /* The engine works normally afterwards. */
  memset (r, 0, sizeof r);
  assert_int_equal (engine_read (e, fd, buf[0], 65536, 0, record, &r[0]), 0);
  assert_int_equal (engine_drain (e), 0);
  assert_int_equal (r[0].res, 65536);
  engine_free (e);
  close (fd);
}

static void
free_with_requests_in_flight (void **state)
{
  struct engine *e = new_engine (state, 16, 65536, 16, 0);
  struct result r[16] = { { 0 } };
  int fd = make_file ("free", 16 * 65536);
  unsigned i;

  for (i = 0; i < 16; i++)
    assert_int_equal (engine_read (e, fd, engine_get_buf (e), 65536,
                                   i * 65536, record, &r[i]), 0);
  assert_int_equal (engine_submit (e), 0);
  engine_free (e);              /* waits; callbacks no longer run */
  for (i = 0; i < 16; i++)
    assert_int_equal (r[i].calls, 0);
  close (fd);
}

/* The first line of a file, or "" when it cannot be read. */
static void
first_line (const char *path, char *line, size_t n)
{
  FILE *f = fopen (path, "r");

  line[0] = '\0';
  if (f == NULL)
    return;
  if (fgets (line, (int) n, f) == NULL)
    line[0] = '\0';
  fclose (f);
}

/* Whether this process may have 2 MiB transparent huge pages: THP not
 * "[never]", huge pages of 2 MiB (not arm64's 512 MiB of 64 KiB pages),
 * THP not disabled for the process. */
static bool
thp_enabled (void)
{
  char line[256];

  first_line ("/sys/kernel/mm/transparent_hugepage/enabled", line,
              sizeof line);
  if (line[0] == '\0' || strstr (line, "[never]"))
    return false;
  first_line ("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", line,
              sizeof line);
  if (strtoul (line, NULL, 10) != 2u << 20)
    return false;
  return prctl (PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0;
}

/* The THPeligible field of the mapping holding p in /proc/self/smaps
 * (1: its faults may take huge pages), or -1 when not found. */
static int
thp_eligible (const void *p)
{
  char line[512];
  bool in = false;
  int v = -1;
  FILE *f = fopen ("/proc/self/smaps", "r");

  if (f == NULL)
    return -1;
  while (v == -1 && fgets (line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf (line, "%lx-%lx ", &lo, &hi) == 2)
      in = (uintptr_t) p >= lo && (uintptr_t) p < hi;
    else if (in && sscanf (line, "THPeligible: %d", &v) == 1)
      break;
  }
  fclose (f);
  return v;
}

/* A pool of whole 2 MiB pages starts on a 2 MiB boundary, so that it can
 * be backed by huge pages (a job's first touch of its buffers costs 8
 * faults instead of 4096), and is asked to be where the system allows
 * it; its buffers are usable to their last byte. */
static void
pool_on_huge_page_boundary (void **state)
{
  struct engine *e = new_engine (state, 8, 2u << 20, 8, 0);
  char *bufs[8], *lo = NULL;
  unsigned i;
  int eligible;

  for (i = 0; i < 8; i++) {
    bufs[i] = engine_get_buf (e);
    assert_non_null (bufs[i]);
    if (lo == NULL || bufs[i] < lo)
      lo = bufs[i];
  }
  assert_int_equal ((uintptr_t) lo % (2u << 20), 0);
  /* (Kernels before 5.8 have no THPeligible: nothing to check there.) */
  if (thp_enabled () && (eligible = thp_eligible (lo)) != -1)
    assert_int_equal (eligible, 1);
  for (i = 0; i < 8; i++) {
    memset (bufs[i], (int) i + 1, 2u << 20);
    assert_int_equal (bufs[i][(2u << 20) - 1], (char) (i + 1));
    engine_put_buf (e, bufs[i]);
  }
  engine_free (e);
}

/* ---- O_DIRECT */

static void
direct_buffers_and_copy (void **state)
{
  struct copy c = { .size = (8u << 20) + 3 * 4096, .chunk_size = 1 << 20 };
  struct result r = { 0 };
  void *bufs[16];
  char path[4200];
  unsigned i;
  int fd;

  c.e = new_engine (state, 16, (1 << 20) + 100, 16, ENGINE_DIRECT);
  for (i = 0; i < 16; i++) {
    bufs[i] = engine_get_buf (c.e);
    assert_non_null (bufs[i]);
    assert_int_equal ((uintptr_t) bufs[i] % ENGINE_ALIGN, 0);
  }
  assert_null (engine_get_buf (c.e));
  for (i = 0; i < 16; i++)
    engine_put_buf (c.e, bufs[i]);
  assert_int_equal (engine_free_bufs (c.e), 16);

  close (make_file ("direct-src", c.size));
  path_of (path, sizeof path, "direct-src");
  c.src = open (path, O_RDONLY | O_DIRECT);
  if (c.src == -1 && errno == EINVAL) {
    print_message ("O_DIRECT unsupported in %s: skipping the copy\n", dir);
    engine_free (c.e);
    return;
  }
  assert_true (c.src >= 0);
  c.dst = open_new ("direct-dst", O_DIRECT);
  assert_true (c.dst >= 0);
  run_copy (&c);
  close (c.src);
  close (c.dst);
  c.src = open (path, O_RDONLY);  /* compared with plain, unaligned reads */
  path_of (path, sizeof path, "direct-dst");
  c.dst = open (path, O_RDONLY);
  assert_same_files (c.src, c.dst);
  close (c.src);
  close (c.dst);

  /* A file ending off a block boundary: the short read must stop at EOF,
   * not go on at an unaligned offset (-EINVAL under O_DIRECT). */
  close (make_file ("direct-odd", 8192 + 100));
  path_of (path, sizeof path, "direct-odd");
  fd = open (path, O_RDONLY | O_DIRECT);
  assert_true (fd >= 0);
  assert_int_equal (engine_read (c.e, fd, bufs[0], 12288, 0, record, &r), 0);
  assert_int_equal (engine_drain (c.e), 0);
  assert_int_equal (r.calls, 1);
  assert_int_equal (r.res, 8192 + 100);
  close (fd);
  engine_free (c.e);
}

/* A direct write the file system refuses (EINVAL: here, from a buffer off
 * alignment) is done again on the fallback descriptor; without one it
 * fails. */
static void
direct_write_falls_back (void **state)
{
  struct engine *e = new_engine (state, 4, 0, 0, 0);
  struct result a = { 0 }, b = { 0 };
  char path[4200];
  char *mem = aligned_alloc (4096, 3 * 4096), got[4096];
  int fd, dfd;

  assert_non_null (mem);
  memset (mem, 'q', 3 * 4096);
  fd = open_new ("direct-fallback", 0);
  assert_true (fd >= 0);
  path_of (path, sizeof path, "direct-fallback");
  dfd = open (path, O_WRONLY | O_DIRECT);
  if (dfd == -1 && errno == EINVAL) {
    print_message ("O_DIRECT unsupported in %s: skipping\n", dir);
    goto out;
  }
  assert_true (dfd >= 0);
  /* mem + 1: not aligned, refused under O_DIRECT */
  assert_int_equal (engine_write (e, dfd, mem + 1, 4096, 0, record, &a), 0);
  assert_int_equal (engine_write_or (e, dfd, fd, mem + 1, 4096, 4096, record,
                                     &b), 0);
  assert_int_equal (engine_fallbacks (e), 0);
  assert_int_equal (engine_drain (e), 0);
  assert_int_equal (engine_fallbacks (e), 1);
  assert_int_equal (a.calls, 1);
  assert_int_equal (a.res, -EINVAL);
  assert_int_equal (b.calls, 1);
  assert_int_equal (b.res, 4096);
  assert_int_equal (pread (fd, got, sizeof got, 4096), 4096);
  assert_memory_equal (got, mem + 1, sizeof got);
  close (dfd);
 out:
  close (fd);
  free (mem);
  engine_free (e);
}

/* ---- arguments */

static void
bad_arguments (void **state)
{
  struct engine *e;
  char b;

  (void) state;
  assert_int_equal (engine_new (0, 0, 0, 0, &e), -EINVAL);
  assert_int_equal (engine_new (ENGINE_MAX_DEPTH + 1, 0, 0, 0, &e), -EINVAL);
  assert_int_equal (engine_new (16, 0, 4, 0, &e), -EINVAL);
  assert_int_equal (engine_new (16, SIZE_MAX - 10, 4, 0, &e), -EINVAL);
  assert_int_equal (engine_new (16, 0, 0, ENGINE_NO_URING, &e), 0);
  assert_null (engine_get_buf (e));
  engine_put_buf (e, &b);       /* not from the pool: ignored */
  assert_int_equal (engine_free_bufs (e), 0);
  assert_int_equal (engine_read (e, 0, &b, (size_t) ENGINE_MAX_LEN + 1, 0,
                                 record, NULL), -EINVAL);
  engine_free (e);
}

/* ---- setup */

static int
make_dir (void **state)
{
  const char *tmp = getenv ("TMPDIR");

  (void) state;
  /* Not /tmp: often a tmpfs, where O_DIRECT cannot be tested. */
  snprintf (dir, sizeof dir, "%s/qchain-test-engine-XXXXXX",
            tmp && *tmp ? tmp : "/var/tmp");
  return mkdtemp (dir) ? 0 : -1;
}

static int
remove_dir (void **state)
{
  char cmd[4200];

  (void) state;
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system (cmd) == 0 ? 0 : -1;
}

#define VARIANTS(f)                                      \
  cmocka_unit_test_prestate (f, (void *) &v_uring),      \
  cmocka_unit_test_prestate (f, (void *) &v_uring_plain), \
  cmocka_unit_test_prestate (f, (void *) &v_sync)

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (bad_arguments),
    VARIANTS (copy_64m),
    VARIANTS (copy_small_bufs),
    VARIANTS (short_read_at_eof),
    VARIANTS (bad_fd_fails_once),
    VARIANTS (fsync_completes),
    VARIANTS (depth_limit),
    VARIANTS (callbacks_queue_followups),
    VARIANTS (drain_empties),
    VARIANTS (cancel_all),
    VARIANTS (free_with_requests_in_flight),
    VARIANTS (pool_on_huge_page_boundary),
    VARIANTS (direct_buffers_and_copy),
    VARIANTS (direct_write_falls_back),
  };

  return cmocka_run_group_tests (tests, make_dir, remove_dir);
}
