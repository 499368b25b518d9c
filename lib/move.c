/* The copy core: planned ranges of a chain's layers moved through the I/O engine into a writer, in guest order. */
#include <config.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "iszero.h"
#include "rounding.h"
#include "engine.h"
#include "fresh.h"
#include "move.h"
#include "writeback.h"

/* Window: the largest read and write. 512 KiB measured fastest: a
 * window's writes wait for all of its reads, and reads of cached data are
 * copied as they are submitted, so smaller windows reach the disk sooner
 * and more evenly. On the 2-CPU VM (medians of 8 alternating runs, each
 * after a qemu-img convert as in bench/run), 2 MiB -> 512 KiB: deep copy
 * of the 4-layer chain 0.846 -> 0.771 s, raw 0.875 -> 0.830 s, shallow
 * 0.361 -> 0.293 s, copy of the zstd image 0.870 -> 0.802 s, zstd and the
 * 64-layer flatten the same; 256 KiB and 1 MiB windows were slower than
 * 512 KiB. An earlier VM had 2 MiB writes faster than 1 MiB ones (fio:
 * 2.1 vs 1.7 GB/s); this one writes 128 KiB to 2 MiB at one speed. */
#define REQ_SIZE (512u << 10)
/* Windows being read or written: 16 MiB of them, as many as the slots.
 * The pool's first touch costs: its huge pages usually come back from
 * the host here, about 100 ms for 32 MiB (a writer of the same bytes
 * from a single buffer is that much faster), and 32 MiB of 512 KiB
 * windows measured no faster (deep 0.784 vs 0.771 s). 8 MiB for a job
 * whose layers hold less than 64 MiB, for which the first touch is a
 * good part of the time (64-layer flatten, 31 MiB, 37.0 -> 34.9 ms with
 * the smaller pool). */
#define POOL_BYTES (16u << 20)
#define POOL_BYTES_SMALL (8u << 20)
#define SMALL_JOB_ALLOC (64ull << 20)
#define NSLOTS 32u                   /* windows plus zero ranges (no buffer) */
#define ENGINE_DEPTH 64u             /* piece reads plus DEST writes */
#define MAX_PIECES 64u               /* pieces or spans of a window */
#define PLAN_BATCH 65536u            /* ranges planned ahead, at most */
#define SMALL_BATCH 256u             /* a small job's first batch */
#define RAW_GRAN 4096u               /* a raw DEST's unit */
#define NSTAGES 4u                   /* staging buffers in use, at most */
#define STAGE_RESERVE 2u             /* pool buffers sparse windows leave */

enum rkind {
  R_DIRECT,                          /* from a layer file's host offset */
  R_READ,                            /* through the view of a layer */
  R_ZERO,                            /* must read as zero over DEST's view */
};

struct range {
  uint64_t off, len, host;
  uint32_t layer;
  uint32_t kind;
};

struct piece {
  uint32_t pos, len;                 /* in the window */
  /* Not read: DEST's writer is handed the buffer's addresses, and the
   * data sink copies from the layer file to DEST's file in the kernel
   * (copy_file_range), one copy instead of two. */
  bool cfr;
  unsigned layer;
  uint64_t host;
};

enum sstate { S_FREE, S_FILLING, S_READING, S_READY, S_WRITING, S_DONE };

struct mover;

/* A window of the guest view: data pieces read into one buffer, or one
 * zero range (no buffer). */
struct slot {
  struct mover *m;
  uint64_t off;                      /* guest offset of buf[0] */
  size_t len;                        /* guest bytes from off placed */
  uint64_t data;                     /* data bytes, for progress */
  bool zero;
  bool staged;                       /* its writes go through stages */
  enum sstate state;
  void *buf;
  unsigned pending;                  /* reads, then writes in flight */
  int res;
  unsigned err_layer;
  /* What is written: under, exactly the pieces; else spans of whole
   * clusters (pos and len only) */
  struct piece pc[MAX_PIECES];
  unsigned npc;
};

/* A pool buffer the data of sparse windows is copied into, packed, for
 * DEST's direct writes: a window then frees its buffer when its writes
 * are queued, not when the disk has done them. Without it, a chain whose
 * windows hold a few clusters each (64 layers of a few writes) had a
 * buffer pool of 2 MiB windows holding 2 MiB of data in all, and the
 * disk one write at a time. */
struct stage {
  struct mover *m;
  char *buf;                         /* NULL: not in use */
  size_t used;
  unsigned pending;                  /* writes in flight from it */
  bool open;                         /* still taking data */
};

struct mover {
  struct move_params p;
  struct move_dest d;
  uint64_t walk_end;                 /* planning stops there */
  size_t bufsize;
  uint32_t gran;                     /* DEST's cluster size (raw: 4 KiB) */
  struct engine *eng;
  struct data_sink sink;
  /* Layers from..stop-1 are only read until mover_finish. */
  struct chain_cursor cur;
  struct slot *wslot;                /* the slot whose data DEST writes */
  int werr;                          /* first failed DEST write */
  bool cfr;                          /* copy_file_range for whole clusters */
  bool zero_range;                   /* and FALLOC_FL_ZERO_RANGE for holes */
  uint64_t unkicked;                 /* DEST bytes written since a kick, */
  uint64_t kick_lo, kick_hi;         /* within these host offsets */
  uint64_t kicked;                   /* bytes write-back was started on */
  bool direct;
  int *dfd;                          /* O_DIRECT fds per layer, -1 = none */
  bool dwrites;                       /* DEST's aligned writes go O_DIRECT */
  struct fresh fresh;                /* DEST writes' zero blocks left out */
  bool staging;                      /* sparse windows' writes are staged */
  bool sparse;                       /* and the last window written was */
  struct stage stages[NSTAGES];
  /* plan: a batch of ranges; plan_pos is where the next batch starts */
  struct range *plan;
  size_t nplan, next;
  uint64_t next_pos;                 /* bytes of plan[next] already taken */
  uint64_t plan_pos, planned;
  uint64_t plan_end;                 /* end of the last range planned */
  uint64_t *fsize;                   /* layer files' sizes: reads past them
                                        are short */
  uint64_t alloc;                    /* bytes the moving layers' files hold */
  size_t batch;                      /* ranges the next batch plans, at most */
  bool small;                        /* surely_small */
  struct slot slots[NSLOTS];
  unsigned head, used;
};

/* ---- planning ---- */

/* Append a range, merged with the last when it continues it (same source,
 * contiguous on the host too) inside the same window. */
static void
plan_add (struct mover *m, enum rkind kind, uint64_t off, uint64_t len,
          unsigned layer, uint64_t host)
{
  while (len) {
    uint64_t win = ROUND_DOWN (off, (uint64_t) m->bufsize);
    uint64_t n = kind == R_ZERO ? len : MIN (len, win + m->bufsize - off);
    struct range *last = m->nplan ? &m->plan[m->nplan - 1] : NULL;

    if (last && last->kind == kind && last->off + last->len == off
        && (kind == R_ZERO || last->off >= win)
        && (kind != R_DIRECT || (last->layer == layer
                                 && last->host + last->len == host))
        /* A view reads what lies below it, not what lies above. */
        && (kind != R_READ || last->layer <= layer))
      last->len += n;
    else
      m->plan[m->nplan++] = (struct range) { off, n, host, layer, kind };
    if (kind != R_ZERO)
      m->planned += n;
    m->plan_end = off + n;
    off += n;
    host += n;
    len -= n;
  }
}

/* Compressed writes take whole DEST clusters: widen to them, never going
 * back over what is planned already; the data comes from the view. */
static void
plan_compressed (struct mover *m, uint64_t off, uint64_t len)
{
  uint64_t g = m->gran;
  uint64_t start = ROUND_DOWN (off, g);
  uint64_t end = MIN (ROUND_UP (off + len, g), m->p.size);

  start = MAX (start, m->plan_end);
  if (start < end)
    plan_add (m, R_READ, start, end - start, m->p.from, 0);
}

static void
plan_extent (struct mover *m, const struct qc_extent *e)
{
  struct layer *l = &m->p.src->layers[e->depth < m->p.src->n ? e->depth : 0];

  /* Zeroes only because a layer above stop is short: what is below it
   * (stop's own data, say) must not show through any more. */
  if (!e->present && e->zero && m->p.zeroes && e->depth + 1 < m->p.stop) {
    plan_add (m, R_ZERO, e->start, e->length, 0, 0);
    return;
  }
  if (!e->present)
    return;
  if (e->zero && !e->data) {
    if (!m->p.zeroes)
      return;
    if (m->d.compress)
      plan_compressed (m, e->start, e->length);
    else
      plan_add (m, R_ZERO, e->start, e->length, 0, 0);
  }
  else if (m->d.compress)
    plan_compressed (m, e->start, e->length);
  else if (e->has_offset && l->io->fd >= 0)
    plan_add (m, R_DIRECT, e->start, e->length, e->depth, e->offset);
  else
    plan_add (m, R_READ, e->start, e->length, e->depth, 0);
}

/* Plan the next batch. A range split by the batch end continues in the
 * next one. */
static int
plan_more (struct mover *m)
{
  struct qc_extent e;
  int r;

  m->nplan = m->next = 0;
  m->next_pos = 0;
  /* An extent adds at most 64 windows' ranges, plus two partial ones. */
  while (m->plan_pos < m->walk_end && m->nplan + 128 <= m->batch) {
    uint64_t off = m->plan_pos, len = m->walk_end - off;
    /* A window of ranges at most per extent keeps the batch bounded. */
    len = MIN (len, (uint64_t) m->bufsize * 64);
    r = chain_block_status_cur (m->p.src, &m->cur, m->p.from, m->p.stop,
                                off, len, &e);
    if (r < 0)
      return r;
    if (e.length == 0)
      return set_image_error (m->p.src->layers[m->p.from].path, EIO,
                              "empty extent at %" PRIu64, off);
    plan_extent (m, &e);
    m->plan_pos += e.length;
  }
  m->batch = MIN (m->batch * 2, (size_t) PLAN_BATCH);
  return 0;
}

/* ---- reading ---- */

static void
read_done (void *opaque, int res)
{
  struct slot *s = opaque;

  s->pending--;
  if (res < 0 && s->res == 0)
    s->res = res;
  if (s->pending == 0 && s->state == S_READING)
    s->state = S_READY;
}

static int
direct_fd (struct mover *m, unsigned layer, uint64_t host, uint64_t len,
           const void *p)
{
  int fd = m->p.src->layers[layer].io->fd;

  if (m->direct && m->dfd[layer] >= 0 && io_dio_aligned (p, len, host))
    fd = m->dfd[layer];
  return fd;
}

/* Read one range piece into the slot's buffer. A layer file's holes are
 * zeroed here, not read: the kernel would fill new page-cache pages with
 * zeroes for them (qemu's partial clusters are fallocated zero ranges, a
 * copied image has them as holes), which costs as much as a disk read
 * where the host takes back free memory. */
static int
read_piece (struct mover *m, struct slot *s, const struct range *rg,
            uint64_t skip, uint64_t n)
{
  char *p = (char *) s->buf + (rg->off + skip - s->off);
  struct layer *l = &m->p.src->layers[rg->layer];
  uint64_t host = rg->host + skip, fsize = m->fsize[rg->layer];
  int r;

  if (rg->kind == R_READ)
    return chain_read (m->p.src, rg->layer, p, n, rg->off + skip);
  /* Past the layer file's end: zeroes. */
  if (host + n > fsize) {
    uint64_t have = fsize > host ? fsize - host : 0;
    memset (p + have, 0, n - have);
    n = have;
  }
  while (n > 0) {
    bool data;
    uint64_t k = io_data_run (l->io, host, n, &data);
    if (!data)
      memset (p, 0, k);
    else {
      while (engine_slots (m->eng) == 0)
        if ((r = engine_wait (m->eng, 1)) < 0)
          return set_error (-r, "I/O engine: %s", strerror (-r));
      r = engine_read (m->eng, direct_fd (m, rg->layer, host, k, p), p, k,
                       host, read_done, s);
      if (r < 0)
        return set_image_error (l->path, -r, "read: %s", strerror (-r));
      s->pending++;
      s->err_layer = rg->layer;
    }
    p += k;
    host += k;
    n -= k;
  }
  return 0;
}

/* Zero the buffer over [from, to) (window positions). */
static void
zero_gap (struct slot *s, size_t from, size_t to)
{
  if (to > from)
    memset ((char *) s->buf + from, 0, to - from);
}

/* A piece DEST takes whole clusters of (so its writer hands the data on
 * without copy-on-write, which would read the buffer), from inside a layer
 * file: moved by copy_file_range. */
static bool
cfr_piece (const struct mover *m, const struct range *rg, uint64_t at,
           uint64_t n)
{
  uint64_t g = m->gran;

  return m->cfr && rg->kind == R_DIRECT && at % g == 0
    && (n % g == 0 || at + n == m->p.size)
    && rg->host + m->next_pos + n <= m->fsize[rg->layer];
}

/* A piece copy_file_range will move when its window is written: have
 * the kernel start reading its data now (not its holes, which the copy
 * skips), so that a cold source is read in parallel and the copy, one
 * piece at a time, finds it in memory. A hint: its failure changes
 * nothing. */
static void
prefetch (const struct mover *m, unsigned layer, uint64_t host, uint64_t n)
{
  struct io *io = m->p.src->layers[layer].io;

  while (n > 0) {
    bool data;
    uint64_t k = io_data_run (io, host, n, &data);
    if (data)
      io_willneed (io, host, k);
    host += k;
    n -= k;
  }
}

/* Without `under`: the window's data goes in spans of whole DEST
 * clusters (a new cluster needs no copy-on-write), their gaps zeroed;
 * clusters between spans are neither zeroed nor scanned (a sparse
 * window's buffer is touched only where its data lies). Whether a piece
 * at `at`, after data ending at `end`, continues the last span. */
static bool
span_continues (const struct mover *m, const struct slot *s, uint64_t end,
                uint64_t at)
{
  return s->npc > 0 && ROUND_DOWN (at, (uint64_t) m->gran)
    <= ROUND_UP (end, (uint64_t) m->gran);
}

/* Close the last span at the end of the cluster data ends in (or the
 * window's or the image's end). Returns its end. */
static uint64_t
span_close (struct mover *m, struct slot *s, uint64_t end)
{
  uint64_t win = s->off;
  uint64_t wend = MIN (ROUND_UP (end, (uint64_t) m->gran),
                       MIN (win + m->bufsize, m->p.size));
  struct piece *pc = &s->pc[s->npc - 1];

  wend = MAX (wend, end);
  zero_gap (s, (size_t) (end - win), (size_t) (wend - win));
  pc->len = (uint32_t) (wend - win - pc->pos);
  return wend;
}

/* Record where a piece at `at` goes: a piece of its own (under: exactly
 * what is written), or into a span. */
static void
place (struct mover *m, struct slot *s, const struct range *rg, uint64_t end,
       uint64_t at, uint64_t n)
{
  uint64_t win = s->off, cs;

  if (m->d.under) {
    s->pc[s->npc++] = (struct piece) { (uint32_t) (at - win), (uint32_t) n,
                                       cfr_piece (m, rg, at, n), rg->layer,
                                       rg->host + m->next_pos };
    return;
  }
  if (span_continues (m, s, end, at)) {
    zero_gap (s, (size_t) (end - win), (size_t) (at - win));
    return;
  }
  if (s->npc > 0)
    span_close (m, s, end);
  cs = ROUND_DOWN (at, (uint64_t) m->gran);   /* a new span's start */
  s->pc[s->npc++] = (struct piece) { (uint32_t) (cs - win), 0, false, 0, 0 };
  zero_gap (s, (size_t) (cs - win), (size_t) (at - win));
}

/* Fill a data window from the plan: every piece of the window (up to the
 * budget; without `under`, up to a cluster boundary past it). */
static int
fill_window (struct mover *m, struct slot *s, uint64_t budget,
             uint64_t *issued)
{
  uint64_t g = m->gran;
  uint64_t win = ROUND_DOWN (m->plan[m->next].off + m->next_pos,
                             (uint64_t) m->bufsize);
  uint64_t end;                      /* guest end of what is placed */
  int r;

  s->off = win;
  /* Without under, writes start on the first piece's cluster. */
  end = m->d.under ? win : MAX (win, ROUND_DOWN (m->plan[m->next].off
                                                 + m->next_pos, g));
  for (;;) {
    const struct range *rg;
    uint64_t at, n;

    if (m->next == m->nplan) {
      /* A batch may end inside a DEST cluster: without `under` the rest
       * of that cluster comes into this window, or the next window's
       * write of the cluster, gaps zeroed, would undo this one's. Slots
       * keep nothing of the plan: it can be refilled here. */
      if (m->d.under || end % g == 0 || m->plan_pos >= m->walk_end)
        break;
      if ((r = plan_more (m)) < 0)
        return r;
      if (m->nplan == 0)
        break;
      continue;
    }
    rg = &m->plan[m->next];
    at = rg->off + m->next_pos;

    if (rg->kind == R_ZERO || at >= win + m->bufsize)
      break;
    if (*issued >= budget && (m->d.under || at >= ROUND_UP (end, g)))
      break;
    if (s->npc == MAX_PIECES && (m->d.under || !span_continues (m, s, end, at)))
      break;
    n = MIN (rg->len - m->next_pos, win + m->bufsize - at);
    /* A throttled step moves about its budget, not a whole window (one
     * 512 KiB piece at 1 MiB/s is half a second's worth at once); without
     * `under`, to the end of a cluster. */
    {
      uint64_t left = budget > *issued ? budget - *issued : 0;
      uint64_t stop = m->d.under ? at + left
        : ROUND_UP (MAX (end, at + left), g);
      if (stop > at)
        n = MIN (n, stop - at);
    }
    place (m, s, rg, end, at, n);
    if (m->d.under && s->pc[s->npc - 1].cfr)
      prefetch (m, rg->layer, rg->host + m->next_pos, n);
    else if ((r = read_piece (m, s, rg, m->next_pos, n)) < 0)
      return r;
    end = at + n;
    s->data += n;
    *issued += n;
    m->next_pos += n;
    if (m->next_pos == rg->len) {
      m->next++;
      m->next_pos = 0;
    }
  }
  s->len = (size_t) (end - win);
  if (!m->d.under && s->npc > 0)
    s->len = (size_t) (span_close (m, s, end) - win);
  return 0;
}

/* Start windows in plan order, at most budget data bytes in this step:
 * zero ranges, and one data window at most. */
static int
issue (struct mover *m, uint64_t budget, uint64_t *issued, bool *progress)
{
  int r;

  while (m->used < NSLOTS) {
    struct slot *s = &m->slots[(m->head + m->used) % NSLOTS];
    const struct range *rg;

    /* Past the budget not even zero ranges: a throttled step ends
     * drained, and a run of them would keep it from that. */
    if (*issued >= budget)
      break;
    if (m->next == m->nplan) {
      if (m->plan_pos >= m->walk_end)
        break;
      /* The plan is refilled in place: only once nothing refers to it. */
      if ((r = plan_more (m)) < 0)
        return r;
      *progress = true;
      continue;
    }
    rg = &m->plan[m->next];
    memset (s, 0, offsetof (struct slot, pc));
    s->m = m;
    s->npc = 0;
    if (rg->kind == R_ZERO) {
      s->zero = true;
      s->off = rg->off + m->next_pos;
      s->len = (size_t) MIN (rg->len - m->next_pos, (uint64_t) 1 << 30);
      s->state = S_READY;
      m->next_pos += s->len;
      if (m->next_pos == rg->len) {
        m->next++;
        m->next_pos = 0;
      }
    }
    else {
      if (m->staging && m->sparse && m->used > 0
          && engine_free_bufs (m->eng) <= STAGE_RESERVE)
        break;
      if ((s->buf = engine_get_buf (m->eng)) == NULL)
        break;
      s->state = S_FILLING;
      m->used++;                     /* callbacks may run while filling */
      r = fill_window (m, s, budget, issued);
      s->state = s->pending ? S_READING : S_READY;
      if (r < 0)
        return r;
      *progress = true;
      break;                         /* one data window: see mover_step */
    }
    m->used++;
    *progress = true;
  }
  return 0;
}

/* ---- writing, in guest order ---- */

/* Length of the run at pos (pieces cut at gran boundaries of the guest
 * offset) that is all zero or all not; *zero says which. */
static size_t
run_at (const struct mover *m, const struct slot *s, size_t pos, size_t end,
        bool *zero)
{
  size_t start = pos;

  *zero = false;
  while (pos < end) {
    uint64_t g = s->off + pos;
    size_t n = (size_t) MIN ((uint64_t) (end - pos),
                             ROUND_UP (g + 1, (uint64_t) m->gran) - g);
    bool z = is_zero ((char *) s->buf + pos, n);

    if (pos == start)
      *zero = z;
    else if (z != *zero)
      break;
    pos += n;
  }
  return pos - start;
}

/* [pos, end) of the slot's buffer into DEST; zero runs stay holes unless
 * DEST has a view below. */
static int
write_span (struct mover *m, struct slot *s, size_t pos, size_t end)
{
  size_t n;
  bool zero;
  int r = 0;

  for (; pos < end && r == 0; pos += n) {
    const char *p = (const char *) s->buf + pos;
    n = run_at (m, s, pos, end, &zero);
    if (zero)
      r = m->d.under ? m->d.ops->zero (m->d.st, s->off + pos, n) : 0;
    else if (m->d.compress)
      r = m->d.ops->pwrite_compressed (m->d.st, p, n, s->off + pos);
    else
      r = m->d.ops->pwrite (m->d.st, p, n, s->off + pos);
  }
  return r;
}

static int
write_slot (struct mover *m, struct slot *s)
{
  unsigned i;
  int r = 0;

  /* Zero ranges too: DEST's writer may send zeroes through the sink (a
   * partial cluster it cannot mark zero). */
  m->wslot = s;
  if (m->staging && engine_fallbacks (m->eng))
    m->staging = false;              /* DEST took no direct write */
  if (m->staging && !s->zero) {
    size_t w = 0;
    for (i = 0; i < s->npc; i++)
      w += s->pc[i].len;
    s->staged = w <= m->bufsize / 4;
    m->sparse = s->staged;
  }
  if (s->zero)
    r = m->d.ops->zero (m->d.st, s->off, s->len);
  for (i = 0; !s->zero && i < s->npc && r == 0; i++) {
    const struct piece *pc = &s->pc[i];
    if (pc->cfr)                     /* unread: no zero detection */
      r = m->d.ops->pwrite (m->d.st, (char *) s->buf + pc->pos, pc->len,
                            s->off + pc->pos);
    else
      r = write_span (m, s, pc->pos, (size_t) pc->pos + pc->len);
  }
  m->wslot = NULL;
  return r;
}

/* What every completed DEST write tells: the first failure, and whether
 * DEST refused a direct write (then it gets no more). */
static void
write_result (struct mover *m, int res)
{
  if (res < 0 && m->werr == 0)
    m->werr = res;
  if (m->d.io && engine_fallbacks (m->eng))
    io_direct_refused (m->d.io);
}

/* The error of the first failed DEST write, set; 0 if none failed. */
static int
write_error (struct mover *m)
{
  if (m->werr == 0)
    return 0;
  return set_image_error (m->d.name, -m->werr, "write: %s",
                          strerror (-m->werr));
}

/* A slot whose writes are done gives its buffer back at once, before the
 * slots ahead of it are done: the buffer of a staged window, or of one
 * the disk finished first, serves the next window meanwhile. */
static void
slot_done (struct mover *m, struct slot *s)
{
  s->state = S_DONE;
  if (s->buf)
    engine_put_buf (m->eng, s->buf);
  s->buf = NULL;
}

static void
write_done (void *opaque, int res)
{
  struct slot *s = opaque;

  s->pending--;
  if (res < 0 && s->res == 0)
    s->res = res;
  write_result (s->m, res);
  if (s->pending == 0 && s->state == S_WRITING)
    slot_done (s->m, s);
}

static void
note_written (struct mover *m, uint64_t off, uint64_t n)
{
  if (m->unkicked == 0 || off < m->kick_lo)
    m->kick_lo = off;
  if (m->unkicked == 0 || off + n > m->kick_hi)
    m->kick_hi = off + n;
  m->unkicked += n;
}

/* ---- staging ---- */

static void
stage_done (void *opaque, int res)
{
  struct stage *st = opaque;

  st->pending--;
  write_result (st->m, res);
}

/* Whether a staged write is queued or in flight. */
static bool
stages_busy (const struct mover *m)
{
  unsigned i;

  for (i = 0; i < NSTAGES; i++)
    if (m->stages[i].pending)
      return true;
  return false;
}

/* Give back the buffers of closed stages whose writes are done. */
static void
stage_reclaim (struct mover *m)
{
  unsigned i;

  for (i = 0; i < NSTAGES; i++) {
    struct stage *st = &m->stages[i];
    if (st->buf && !st->open && st->pending == 0) {
      engine_put_buf (m->eng, st->buf);
      st->buf = NULL;
    }
  }
}

/* Close the open stage (an empty one goes back at once). */
static void
stage_close (struct mover *m)
{
  unsigned i;

  for (i = 0; i < NSTAGES; i++)
    m->stages[i].open = false;
  stage_reclaim (m);
}

/* A stage with room for n bytes, or NULL: none free (the write is then
 * done from the window's buffer, as without staging). */
static struct stage *
stage_get (struct mover *m, size_t n)
{
  struct stage *st = NULL;
  unsigned i;

  for (i = 0; i < NSTAGES; i++)
    if (m->stages[i].open) {
      if (m->stages[i].used + n <= m->bufsize)
        return &m->stages[i];
      break;
    }
  stage_close (m);
  for (i = 0; i < NSTAGES && st == NULL; i++)
    if (m->stages[i].buf == NULL)
      st = &m->stages[i];
  if (st == NULL || (st->buf = engine_get_buf (m->eng)) == NULL)
    return NULL;
  st->m = m;
  st->used = 0;
  st->pending = 0;
  st->open = true;
  return st;
}

/* Whether a window's writes go through a stage: what it writes (whole
 * DEST clusters around its data) is little for its buffer, and the data
 * is its own (not a zero cluster of DEST's writer). */
static bool
stage_slot (const struct mover *m, const struct slot *s, const char *p)
{
  const char *b = s->buf;

  return s->staged && b && p >= b && p < b + m->bufsize;
}

/* Queue a DEST write of the slot's data with the engine. */
static int
sink_engine (struct mover *m, struct slot *s, const void *buf, size_t n,
             uint64_t off)
{
  int fd = m->d.fd, r;
  struct stage *st = NULL;
  engine_cb cb = write_done;
  void *opaque = s;

  while (engine_slots (m->eng) == 0)
    if ((r = engine_wait (m->eng, 1)) < 0)
      return set_error (-r, "I/O engine: %s", strerror (-r));
  if (stage_slot (m, s, buf) && n <= m->bufsize
      && (st = stage_get (m, n)) != NULL) {
    char *p = st->buf + st->used;
    memcpy (p, buf, n);
    st->used += ROUND_UP (n, (size_t) ENGINE_ALIGN);
    buf = p;
    cb = stage_done;
    opaque = st;
  }
  if (m->d.io)
    fd = io_write_fd (m->d.io, buf, n, off);
  r = engine_write_or (m->eng, fd, m->d.fd, buf, n, off, cb, opaque);
  if (r < 0)
    return set_image_error (m->d.name, -r, "write: %s", strerror (-r));
  if (st)
    st->pending++;
  else
    s->pending++;
  if (fd == m->d.fd)                 /* else nothing to write back */
    note_written (m, off, n);
  return 0;
}

/* sink_engine as fresh_write's emit. */
struct out_ctx {
  struct mover *m;
  struct slot *s;
};

static int
emit_engine (void *opaque, const void *buf, size_t n, uint64_t off)
{
  struct out_ctx *c = opaque;

  return sink_engine (c->m, c->s, buf, n, off);
}

/* A DEST write, its zero blocks left out where DEST's file was never
 * written (fresh.h). A run at the end leaves the file short of it until
 * the file is extended (sink_drain, mover_finish). */
static int
sink_out (struct mover *m, struct slot *s, const char *p, size_t n,
          uint64_t off)
{
  struct out_ctx c = { m, s };

  return fresh_write (m->d.io, &m->fresh, p, n, off, emit_engine, &c);
}

/* The file reaches the end of every write that left its last blocks out;
 * 0 or -errno after set_error. */
static int
extend_dest (struct mover *m)
{
  return fresh_extend (m->d.io, &m->fresh);
}

/* n bytes from layer file `layer` at host to DEST's file at off, in the
 * kernel. */
static int
copy_range (struct mover *m, unsigned layer, uint64_t host, size_t n,
            uint64_t off)
{
  int sfd = m->p.src->layers[layer].io->fd;
  loff_t in = (loff_t) host, out = (loff_t) off;

  if (m->d.io) {
    io_note_end (m->d.io, off + n);
    io_note_written (m->d.io, off + n);
  }
  while (n > 0) {
    ssize_t k = copy_file_range (sfd, &in, m->d.fd, &out, n, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return -errno;
    if (k == 0)                      /* the layer file ended: a bug here */
      return -EIO;
    n -= (size_t) k;
  }
  return 0;
}

/* DEST's file over [off, off+n) reads as zero, nothing written (the file
 * grows to cover it): a layer file's hole, which a kernel copy would read
 * as new zero pages and write as data. -EOPNOTSUPP where the request is
 * not aligned to file system blocks (the kernel would wait for the data
 * written around it) or it fails. */
static int
zero_dest (struct mover *m, uint64_t off, uint64_t n)
{
  if (!m->zero_range || off % IO_DIO_ALIGN || n % IO_DIO_ALIGN)
    return -EOPNOTSUPP;
  /* Any failure: the copy writes the zeroes (and says what is wrong if
   * it fails too). Making written blocks a zero range may need new ones
   * (extents split), so a full disk can refuse it where the copy into
   * the allocated blocks would not. */
  if (fallocate (m->d.fd, FALLOC_FL_ZERO_RANGE, (off_t) off, (off_t) n) < 0) {
    if (errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)
      m->zero_range = false;
    return -EOPNOTSUPP;
  }
  if (m->d.io)
    io_note_end (m->d.io, off + n);
  return 0;
}

/* A piece that was not read, from layer file `layer` at host: copied in
 * the kernel, its holes made zero ranges of DEST. -EXDEV and the like
 * where the file systems cannot copy. */
static int
copy_piece (struct mover *m, unsigned layer, uint64_t host, size_t n,
            uint64_t off)
{
  struct io *io = m->p.src->layers[layer].io;

  while (n > 0) {
    bool data;
    size_t k = (size_t) io_data_run (io, host, n, &data);
    int r = data ? -EOPNOTSUPP : zero_dest (m, off, k);
    if (r == -EOPNOTSUPP)
      r = copy_range (m, layer, host, k, off);
    if (r < 0)
      return r;
    host += k;
    off += k;
    n -= k;
  }
  return 0;
}

/* A piece that was not read: copy it in the kernel, or, where the file
 * systems cannot, read it here and let the engine write it. */
static int
sink_copy (struct mover *m, struct slot *s, const struct piece *pc,
           size_t pos, size_t n, uint64_t off)
{
  uint64_t host = pc->host + (pos - pc->pos);
  char *p = (char *) s->buf + pos;
  int r = m->cfr ? copy_piece (m, pc->layer, host, n, off) : -EXDEV;

  if (r == -EXDEV || r == -EINVAL || r == -EOPNOTSUPP || r == -ENOSYS) {
    m->cfr = false;                  /* no kernel copy here: read it */
    r = io_pread (m->p.src->layers[pc->layer].io, p, n, host);
    if (r < 0)
      return r;
    return sink_out (m, s, p, n, off);
  }
  if (r < 0)
    return set_image_error (m->d.name, -r, "kernel copy from %s: %s",
                            m->p.src->layers[pc->layer].path, strerror (-r));
  note_written (m, off, n);
  return 0;
}

/* The data sink DEST's writer sends guest data to: the engine, or the
 * kernel copy for the pieces not read. A write may span pieces. */
static int
sink_write (void *opaque, const void *buf, size_t n, uint64_t off)
{
  struct mover *m = opaque;
  struct slot *s = m->wslot;
  const char *p = buf, *b;
  unsigned i;
  int r;

  if (s == NULL)                     /* not from a slot's buffer: a bug */
    return set_image_error (m->d.name, EINVAL, "data write outside a "
                            "window (internal error)");
  b = s->buf;
  if (s->zero || p < b || p >= b + m->bufsize)
    return sink_out (m, s, buf, n, off);
  for (i = 0; i < s->npc && n > 0; i++) {
    const struct piece *pc = &s->pc[i];
    size_t pos = (size_t) (p - b), k;
    if (pos >= (size_t) pc->pos + pc->len)
      continue;
    if (pos < pc->pos)               /* not in a piece: not ours to copy */
      break;
    k = MIN (n, (size_t) pc->pos + pc->len - pos);
    r = pc->cfr ? sink_copy (m, s, pc, pos, k, off)
      : sink_out (m, s, p, k, off);
    if (r < 0)
      return r;
    p += k;
    off += k;
    n -= k;
  }
  return n ? sink_out (m, s, p, n, off) : 0;
}

static int
sink_drain (void *opaque)
{
  struct mover *m = opaque;
  int r = engine_drain (m->eng);

  if (r < 0)
    return set_error (-r, "I/O engine: %s", strerror (-r));
  if ((r = write_error (m)) < 0)
    return r;
  return extend_dest (m);     /* before metadata that points past it */
}

static int
slot_error (struct mover *m, struct slot *s)
{
  const char *name = s->state == S_WRITING || s->state == S_DONE
    ? m->d.name : m->p.src->layers[s->err_layer].path;

  return set_image_error (name, -s->res, "I/O error at %" PRIu64 ": %s",
                          s->off, strerror (-s->res));
}

/* Write what has been read, strictly in order (DEST allocates in order),
 * and retire finished slots from the head. */
static int
retire (struct mover *m, uint64_t *moved, bool *progress)
{
  unsigned i;
  int r;

  for (i = 0; i < m->used; i++) {
    struct slot *s = &m->slots[(m->head + i) % NSLOTS];
    if (s->res < 0)
      return slot_error (m, s);
    if (s->state == S_READING || s->state == S_FILLING)
      break;
    if (s->state != S_READY)
      continue;
    /* S_WRITING only once every write is queued: writes that complete
     * while later ones wait for the engine must not end the slot. */
    if ((r = write_slot (m, s)) < 0)
      return r;
    if (s->pending)
      s->state = S_WRITING;
    else
      slot_done (m, s);
    *progress = true;
  }
  /* The final fsync would write everything at once, after the copy: start
   * write-back as the data comes, so the disk works while we copy. */
  if (writeback_due (m->unkicked, m->kicked) && m->d.fd >= 0) {
    /* Only what was written since: the whole file would be walked each
     * time otherwise. */
    sync_file_range (m->d.fd, (off64_t) m->kick_lo,
                     (off64_t) (m->kick_hi - m->kick_lo),
                     SYNC_FILE_RANGE_WRITE);
    m->kicked += m->unkicked;
    m->unkicked = 0;
  }
  if ((r = write_error (m)) < 0)      /* a staged write failed */
    return r;
  stage_reclaim (m);
  while (m->used && m->slots[m->head].state == S_DONE) {
    struct slot *s = &m->slots[m->head];
    if (s->res < 0)
      return slot_error (m, s);
    *moved += s->data;
    if (s->buf)
      engine_put_buf (m->eng, s->buf);
    s->buf = NULL;
    s->state = S_FREE;
    m->head = (m->head + 1) % NSLOTS;
    m->used--;
    *progress = true;
  }
  return 0;
}

int
mover_step (struct mover *m, uint64_t budget, bool keep_full, uint64_t *moved)
{
  uint64_t issued = 0;
  int r;

  for (;;) {
    bool progress = false;
    bool planned_all;
    bool drained;

    /* Writes first, submitted on their own, then one window's reads: a
     * read of cached data is copied during its submission, and writes
     * submitted with it reach the disk only after all of it. The disk
     * finishes the writes in flight together; refilling every buffer
     * before writing any idled it for the whole refill (a 1256 MiB raw
     * copy: 1.16 -> 0.99 s). */
    if ((r = retire (m, moved, &progress)) < 0)
      return r;
    if ((r = engine_submit (m->eng)) < 0)
      return set_error (-r, "I/O engine: %s", strerror (-r));
    if ((r = issue (m, budget, &issued, &progress)) < 0)
      return r;
    planned_all = m->next == m->nplan && m->plan_pos >= m->walk_end;
    drained = m->used == 0 && !stages_busy (m);
    if (planned_all && drained)
      return 1;
    /* Unthrottled, a step leaves its windows in flight: draining the
     * pipeline at each step idled the disk while it refilled (a 483 MiB
     * shallow copy: 8 steps). Throttled, it ends drained, or its moved
     * bytes would be charged steps after they were issued. */
    if (!planned_all && issued >= budget && (drained || keep_full)) {
      if ((r = engine_submit (m->eng)) < 0)
        return set_error (-r, "I/O engine: %s", strerror (-r));
      return 0;
    }
    if (engine_inflight (m->eng)) {
      if ((r = engine_wait (m->eng, progress ? 0 : 1)) < 0)
        return set_error (-r, "I/O engine: %s", strerror (-r));
    }
    else if (!progress)
      return set_image_error (m->d.name, EIO, "copy stalled (internal "
                              "error)");
  }
}

uint64_t
mover_planned (const struct mover *m)
{
  return m->planned;
}

int
mover_job_step (struct mover *m, struct qc_job *j, uint64_t budget,
                uint64_t *moved)
{
  uint64_t before = *moved;
  int r = mover_step (m, budget, j->thr.rate == 0, moved);

  j->cur += *moved - before;
  j->end = MAX (j->end, m->planned);
  return r;
}

/* ---- set-up ---- */

static int
layer_sizes (struct mover *m)
{
  struct stat sb;
  unsigned i;
  int r;

  for (i = 0; i < m->p.src->n; i++) {
    int fd = m->p.src->layers[i].io->fd;
    if (fd < 0)
      continue;
    if (fstat (fd, &sb) < 0)
      return set_image_error (m->p.src->layers[i].path, errno, "stat: %m");
    /* A block device's size is not st_size (0): it is where it ends,
     * and all of it counts as allocated. */
    r = io_get_size (m->p.src->layers[i].io, &m->fsize[i]);
    if (r < 0)
      return r;
    if (i >= m->p.from && i < m->p.stop)
      m->alloc += S_ISREG (sb.st_mode)
        ? MIN ((uint64_t) sb.st_blocks * 512, m->fsize[i]) : m->fsize[i];
  }
  return 0;
}

/* Whether the job is small for sure before it is planned: the layers it
 * reads from hold less than a big job moves (data cannot outgrow the
 * files that hold it, bar compressed clusters, which only make the guess
 * wrong, not the copy). Such a job starts writing after a small first
 * batch instead of after planning all of it, so the disk works while the
 * rest is planned (a 64-layer commit spends a sixth of its time
 * planning); a big one plans a whole batch first, and its size decides
 * how it writes. */
static bool
surely_small (const struct mover *m)
{
  unsigned i;

  if (m->p.flags & (QC_JOB_DIRECT | QC_JOB_DIRECT_WRITES))
    return false;
  for (i = m->p.from; i < m->p.stop && i < m->p.src->n; i++)
    if (m->p.src->layers[i].io->fd < 0)
      return false;
  return m->alloc < job_direct_min (m->d.fresh);
}

static int
setup_direct (struct mover *m)
{
  unsigned i;

  m->dfd = malloc (m->p.src->n * sizeof *m->dfd);
  if (m->dfd == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < m->p.src->n; i++) {
    int fd = m->p.src->layers[i].io->fd;
    m->dfd[i] = i >= m->p.from && i < m->p.stop && fd >= 0
      ? io_reopen_direct (fd, O_RDONLY) : -1;
  }
  return 0;
}

/* Zero detection and whole-cluster writes go by DEST's clusters; raw has
 * none: 4 KiB, the usual file system block. */
static uint32_t
dest_gran (const struct move_dest *d)
{
  struct qc_info info = { .struct_size = sizeof info };

  d->ops->describe (d->st, &info);
  return d->ops == &raw_format || info.cluster_size == 0 ? RAW_GRAN
    : info.cluster_size;
}

int
mover_new (const struct move_params *p, const struct move_dest *d,
           struct mover **out)
{
  struct mover *m = calloc (1, sizeof *m);
  unsigned eflags = 0;
  int r;

  if (m == NULL)
    return set_error (ENOMEM, "out of memory");
  m->p = *p;
  m->d = *d;
  m->direct = (p->flags & QC_JOB_DIRECT) != 0;
  m->walk_end = MIN (p->size, p->src->layers[p->from].info.virtual_size);
  m->gran = dest_gran (d);
  m->bufsize = MAX ((size_t) REQ_SIZE, (size_t) m->gran);
  if (m->gran == 0 || m->gran > (2u << 20) || (m->gran & (m->gran - 1)))
    r = set_image_error (d->name, EINVAL, "cluster size %" PRIu32 " cannot "
                         "be copied into", m->gran);
  else if ((m->plan = malloc (PLAN_BATCH * sizeof *m->plan)) == NULL
           || (m->fsize = calloc (p->src->n, sizeof *m->fsize)) == NULL)
    r = set_error (ENOMEM, "out of memory");
  else if ((r = chain_cursor_init (&m->cur, p->src)) < 0)
    ;
  else if ((r = layer_sizes (m)) == 0 && m->direct)
    r = setup_direct (m);
  if (r == 0) {
    /* No registered buffers: registering pins and faults in the whole
     * pool (16 MiB) before the first request, a third of a small job's
     * CPU (64-layer keep-active commit), and 2 GiB copies measured the
     * same without. */
    eflags = ((p->flags & QC_JOB_NO_URING) ? ENGINE_NO_URING : 0)
      | (m->direct ? ENGINE_DIRECT : 0) | ENGINE_NO_FIXED;
    size_t pool = m->alloc < SMALL_JOB_ALLOC ? POOL_BYTES_SMALL : POOL_BYTES;
    r = engine_new (ENGINE_DEPTH, m->bufsize,
                    (unsigned) MAX (4u, pool / m->bufsize), eflags,
                    &m->eng);
    if (r < 0 && !have_error ())
      r = set_error (-r, "I/O engine: %s", strerror (-r));
  }
  if (r < 0) {
    mover_free (m);
    return r;
  }
  m->small = surely_small (m);
  m->batch = m->small ? SMALL_BATCH : PLAN_BATCH;
  /* The first batch now: a big job's end is known before it starts. */
  if ((r = plan_more (m)) < 0) {
    mover_free (m);
    return r;
  }
  /* Past the page cache when the job is big (or told to): its first
   * batch, or more than a batch. */
  if (d->io && d->fd >= 0
      && job_direct_writes (p->flags, m->plan_pos >= m->walk_end ? m->planned
                            : m->small ? m->alloc : UINT64_MAX, d->fresh)
      && io_set_direct_writes (d->io))
    m->dwrites = true;
  /* Only direct writes hold a window's buffer until the disk is done;
   * the sync backend's are done when queued. */
  m->staging = m->dwrites
    && strcmp (engine_backend (m->eng), "io_uring") == 0;
  /* Kernel copies where DEST's view below is kept (nothing to detect
   * zeroes for) and the page cache is used anyway. */
  m->cfr = d->as_is && d->under && !d->compress && !m->dwrites
    && d->fd >= 0;
  m->zero_range = m->cfr;
  if (d->fd >= 0 && d->ops->set_data_sink) {
    m->sink = (struct data_sink) { sink_write, sink_drain, m };
    d->ops->set_data_sink (d->st, &m->sink);
  }
  *out = m;
  return 0;
}

int
mover_finish (struct mover *m)
{
  int r;

  if (m->eng == NULL)
    return 0;
  /* After an abort or a failure too: a write queued is one DEST's writer
   * has an L2 entry for, which its flush will write (bounded: the pool's
   * windows at most; only a broken engine is cancelled). Then the file
   * reaches what those entries point to, and a write that failed, also
   * one still in flight at an abort, is reported. */
  r = engine_drain (m->eng);
  if (r < 0) {
    engine_cancel_all (m->eng);
    (void) extend_dest (m);
    r = set_error (-r, "I/O engine: %s", strerror (-r));
  }
  else if ((r = extend_dest (m)) == 0)
    r = write_error (m);
  if (m->d.ops->set_data_sink && m->d.st)
    m->d.ops->set_data_sink (m->d.st, NULL);
  m->d.st = NULL;
  /* Planning is over: the job may write the layers now (commit --delete). */
  chain_cursor_free (&m->cur);
  return r;
}

void
mover_free (struct mover *m)
{
  unsigned i;

  if (m == NULL)
    return;
  if (m->eng)
    engine_free (m->eng);
  if (m->d.st && m->d.ops->set_data_sink)
    m->d.ops->set_data_sink (m->d.st, NULL);
  if (m->dfd)
    for (i = 0; i < m->p.src->n; i++)
      if (m->dfd[i] >= 0)
        close (m->dfd[i]);
  free (m->dfd);
  free (m->fsize);
  free (m->plan);
  chain_cursor_free (&m->cur);
  free (m);
}
