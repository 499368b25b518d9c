/* Pull and rebase's common job: plan from layer metadata, write old-view data into IMAGE, flush, then switch its backing. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "engine.h"
#include "errors.h"
#include "fresh.h"
#include "iszero.h"
#include "rounding.h"
#include "internal.h"
#include "retarget.h"
#include "writeback.h"

/*
 * Safety rests on one rule: IMAGE only ever receives bytes of its current
 * guest view (the old backing view where it allocates nothing), so each
 * write, landed or not, leaves that view unchanged; only the last header
 * write, after everything is durable, changes what lies below.
 */

#define CHUNK (1u << 20)             /* compared and written at once */
#define ZERO_CHUNK (64ull << 20)     /* one zero request: keeps steps short */
/* What is written is made durable this often, so that a rerun after a
 * crash resumes near where it stopped; more often when throttled, as a
 * throttled job is long by design and its flushes cost it nothing. A
 * flush stalls the pipeline, so an unthrottled job does few. */
#define CHECKPOINT_NS (5000ull * 1000 * 1000)
#define CHECKPOINT_THROTTLED_NS (500ull * 1000 * 1000)
/* Chunks whose writes may be in flight while the next ones are read and
 * compared, and requests in flight at most. */
#define NBUFS 8u
#define DEPTH 32u

struct rtjob;

/* A chunk's buffer, lent to IMAGE's writer until its writes are done. */
struct wbuf {
  struct rtjob *x;
  unsigned char *buf;                /* NULL: free */
  unsigned pending;                  /* its writes in flight */
  bool sealed;                       /* every write of it queued */
};

/* The job's state beyond the plan (struct retarget, retarget.h). */
struct rtjob {
  struct retarget rt;
  size_t bufsize;
  unsigned char *obuf, *nbuf;        /* old and new view of a chunk */
  /* IMAGE's guest data goes through the I/O engine (its data sink) */
  struct engine *eng;
  struct data_sink sink;
  struct wbuf wb[NBUFS];
  struct wbuf *cur;                  /* obuf's: the chunk being written */
  int werr;                          /* the first failed write */
  struct fresh fresh;                /* zero blocks left out */
  struct chain_below below;
  struct backing_reader br;
  size_t next;                       /* plan[next] is being moved */
  uint64_t next_pos;                 /* bytes of plan[next] done */
  uint64_t synced_ns;                /* last checkpoint */
  uint64_t kicked_to;                /* file offset write-back started to */
  uint64_t unkicked;                 /* written since write-back started */
  uint64_t kicked;                   /* written before that */
};

/* ---- moving data into IMAGE ---- */

enum piece { PC_SKIP, PC_ZERO, PC_DATA };

static int
write_run (struct rtjob *x, enum piece kind, uint64_t off, size_t pos,
           size_t n)
{
  struct layer *l = &x->rt.c->layers[0];

  if (n == 0 || kind == PC_SKIP)
    return 0;
  if (kind == PC_ZERO)
    return l->ops->zero (l->st, off + pos, n);
  return l->ops->pwrite (l->st, x->obuf + pos, n, off + pos);
}

/* ---- IMAGE's data writes, queued with the engine ---- */

static void
release (struct wbuf *w)
{
  engine_put_buf (w->x->eng, w->buf);
  w->buf = NULL;
}

static void
wrote (void *opaque, int res)
{
  struct wbuf *w = opaque;

  if (res < 0 && w->x->werr == 0)
    w->x->werr = res;
  if (engine_fallbacks (w->x->eng))
    io_direct_refused (w->x->rt.c->layers[0].io);
  if (--w->pending == 0 && w->sealed)
    release (w);
}

/* A buffer for the next chunk, waiting for earlier chunks' writes. */
static int
take_buf (struct rtjob *x)
{
  unsigned char *b;
  unsigned i;
  int r;

  while ((b = engine_get_buf (x->eng)) == NULL) {
    if (engine_inflight (x->eng) == 0)
      return set_error (EIO, "no buffer free (internal error)");
    if ((r = engine_wait (x->eng, 1)) < 0)
      return set_error (-r, "I/O engine: %s", strerror (-r));
  }
  for (i = 0; i < NBUFS && x->wb[i].buf != NULL; i++)
    ;                                /* NBUFS entries, NBUFS buffers */
  if (i == NBUFS) {
    engine_put_buf (x->eng, b);
    return set_error (EIO, "no chunk entry free (internal error)");
  }
  x->cur = &x->wb[i];
  *x->cur = (struct wbuf) { .x = x, .buf = b };
  x->obuf = b;
  return 0;
}

/* Every write of the chunk is queued: its buffer returns with the last. */
static void
seal (struct rtjob *x)
{
  struct wbuf *w = x->cur;

  x->cur = NULL;
  x->obuf = NULL;
  if (w == NULL)
    return;
  w->sealed = true;
  if (w->pending == 0)
    release (w);
}

/* One piece of a chunk's write, queued with the engine. */
static int
queue_write (void *opaque, const void *buf, size_t n, uint64_t off)
{
  struct rtjob *x = opaque;
  struct io *io = x->rt.c->layers[0].io;
  int fd, r;

  while (engine_slots (x->eng) == 0)
    if ((r = engine_wait (x->eng, 1)) < 0)
      return set_error (-r, "I/O engine: %s", strerror (-r));
  if ((fd = io_write_fd (io, buf, n, off)) == io->fd)
    x->unkicked += n;
  if ((r = engine_write_or (x->eng, fd, io->fd, buf, n, off, wrote,
                            x->cur)) < 0)
    return set_image_error (io->name, -r, "write: %s", strerror (-r));
  x->cur->pending++;
  return 0;
}

/* A chunk's write leaves out the zero runs of new clusters appended to
 * IMAGE (fresh.h): a cluster that holds one 4 KiB write of a layer over
 * a hole of the new backing view is mostly zeroes. */
static int
sink_write (void *opaque, const void *buf, size_t n, uint64_t off)
{
  struct rtjob *x = opaque;
  struct io *io = x->rt.c->layers[0].io;
  struct wbuf *w = x->cur;
  const unsigned char *p = buf;

  /* Not a chunk's data (zeroes a v2 image writes out, say): the caller
   * keeps it only for the call. */
  if (w == NULL || p < w->buf || p + n > w->buf + x->bufsize)
    return io_pwrite (io, p, n, off);
  return fresh_write (io, &x->fresh, p, n, off, queue_write, x);
}

static int
sink_drain (void *opaque)
{
  struct rtjob *x = opaque;
  struct io *io = x->rt.c->layers[0].io;
  int r = engine_drain (x->eng);

  if (r < 0)
    return set_error (-r, "I/O engine: %s", strerror (-r));
  if (x->werr < 0)
    return set_image_error (io->name, -x->werr, "write: %s",
                            strerror (-x->werr));
  /* Before metadata that points past the file's end. */
  return fresh_extend (io, &x->fresh);
}

/* The flush at the end would write everything back at once, after the
 * copying: start write-back as the data comes, so the disk works while
 * the job copies. Only a hint: errors show at the flush. */
static void
kick_writeback (struct rtjob *x)
{
  int fd = x->rt.c->layers[0].io->fd;
  struct stat st;

  /* Only the part of the file that grew since (new clusters are
   * appended): a whole-file request walks all of it every time, which
   * measured slower than no request at all. */
  if (x->rt.direct_writes && !x->rt.c->layers[0].io->dio_refused)
    return;                          /* nothing cached to write back */
  if (writeback_due (x->unkicked, x->kicked) && fd >= 0
      && fstat (fd, &st) == 0) {
    uint64_t end = (uint64_t) st.st_size;
    if (end > x->kicked_to)
      sync_file_range (fd, (off64_t) x->kicked_to,
                       (off64_t) (end - x->kicked_to), SYNC_FILE_RANGE_WRITE);
    x->kicked_to = end;
    x->kicked += x->unkicked;
    x->unkicked = 0;
  }
}

/* Write the old view of [off, off+n) held in obuf, cut at IMAGE's units:
 * units equal to newv's are skipped (newv NULL: none), all-zero ones
 * become zero requests; neighbours of one kind go in one request. */
static int
write_pieces (struct rtjob *x, uint64_t off, size_t n,
              const unsigned char *newv)
{
  enum piece run = PC_SKIP, k;
  size_t pos = 0, start = 0, len;
  uint64_t g = x->rt.gran;
  int r;

  while (pos < n) {
    len = (size_t) MIN ((uint64_t) (n - pos),
                        ROUND_UP (off + pos + 1, g) - (off + pos));
    if (newv && memcmp (x->obuf + pos, newv + pos, len) == 0)
      k = PC_SKIP;
    else
      k = is_zero (x->obuf + pos, len) ? PC_ZERO : PC_DATA;
    if (k != run) {
      if ((r = write_run (x, run, off, start, pos - start)) < 0)
        return r;
      run = k;
      start = pos;
    }
    pos += len;
  }
  return write_run (x, run, off, start, pos - start);
}

/* The old view of n bytes of p from pos on, into buf. */
static int
read_old (struct rtjob *x, const struct prange *p, uint64_t pos,
          unsigned char *buf, size_t n)
{
  struct chain *c = x->rt.c;
  struct layer *l = &c->layers[p->layer];

  switch (p->src) {
  case S_ZERO:
    memset (buf, 0, n);
    return 0;
  case S_FILE:
    return io_pread (l->io, buf, n, p->host + pos);
  case S_LAYER:
    return l->ops->read (l->st, buf, n, p->off + pos);
  default:
    if (c->n < 2) {
      memset (buf, 0, n);
      return 0;
    }
    return chain_read (c, 1, buf, n, p->off + pos);
  }
}

/* The view IMAGE's new backing file will give. */
static int
read_new (struct rtjob *x, uint64_t off, size_t n)
{
  struct retarget *rt = &x->rt;

  if (rt->mode == RT_REBASE_KEEP)
    return chain_read (rt->c, rt->keep, x->nbuf, n, off);
  if (rt->nc == NULL) {
    memset (x->nbuf, 0, n);
    return 0;
  }
  return chain_read (rt->nc, 0, x->nbuf, n, off);
}

/* A chunk of at most a buffer, and about `avail` bytes when throttled
 * (rounded up to a unit of IMAGE, which is never written in halves). */
static size_t
chunk_len (const struct rtjob *x, uint64_t off, uint64_t avail)
{
  uint64_t n = x->bufsize;

  if (avail < n)
    n = MIN (n, ROUND_UP (off + avail, (uint64_t) x->rt.gran) - off);
  return (size_t) n;
}

static void
advance (struct rtjob *x, uint64_t n)
{
  x->next_pos += n;
  if (x->next_pos == x->rt.plan[x->next].len) {
    x->next++;
    x->next_pos = 0;
  }
}

/* Gather the old view of up to `want` bytes of guest-contiguous planned
 * ranges of one kind into obuf, compare, write. Returns the bytes done. */
static int
move_chunk (struct rtjob *x, size_t want, size_t *done)
{
  const struct prange *p = &x->rt.plan[x->next];
  enum pkind kind = p->kind;
  uint64_t off = p->off + x->next_pos;
  size_t fill = 0, m;
  int r;

  *done = 0;
  if ((r = take_buf (x)) < 0)
    return r;
  while (fill < want && x->next < x->rt.nplan
         && (p = &x->rt.plan[x->next])->kind == kind
         && p->off + x->next_pos == off + fill) {
    m = (size_t) MIN ((uint64_t) (want - fill), p->len - x->next_pos);
    if ((r = read_old (x, p, x->next_pos, x->obuf + fill, m)) < 0)
      break;
    fill += m;
    advance (x, m);
  }
  *done = fill;
  if (r == 0 && kind == P_CMP)
    r = read_new (x, off, fill);
  if (r == 0)
    r = write_pieces (x, off, fill, kind == P_CMP ? x->nbuf : NULL);
  seal (x);
  if (r == 0 && (r = engine_submit (x->eng)) < 0)
    r = set_error (-r, "I/O engine: %s", strerror (-r));
  kick_writeback (x);
  return r;
}

/* Make what is written durable now and then: the header still names the
 * old backing, so this only saves a rerun work. */
static int
checkpoint (struct qc_job *j, struct rtjob *x)
{
  struct layer *l = &x->rt.c->layers[0];
  uint64_t now = throttle_now_ns ();
  int r;

  if (now - x->synced_ns < (j->thr.rate ? CHECKPOINT_THROTTLED_NS
                            : CHECKPOINT_NS))
    return 0;
  if ((r = l->ops->flush (l->st)) < 0)
    return r;
  x->synced_ns = throttle_now_ns ();
  return 0;
}

static int
rt_step (struct qc_job *j, uint64_t budget, uint64_t *moved)
{
  struct rtjob *x = j->priv;
  struct layer *l = &x->rt.c->layers[0];
  uint64_t done = 0;
  size_t n;
  int r;

  for (;;) {
    const struct prange *p;

    if (x->next == x->rt.nplan) {
      if (retarget_plan_done (&x->rt))
        break;
      if ((r = retarget_plan_more (&x->rt)) < 0)
        return r;
      x->next = 0;
      x->next_pos = 0;
      j->end = MAX (j->end, x->rt.planned_bytes);
      continue;
    }
    p = &x->rt.plan[x->next];
    if (p->kind == P_ZERO) {
      n = (size_t) MIN (p->len - x->next_pos, ZERO_CHUNK);
      if ((r = l->ops->zero (l->st, p->off + x->next_pos, n)) < 0)
        return r;
      advance (x, n);
      continue;
    }
    if (done >= budget)
      break;
    r = move_chunk (x, chunk_len (x, p->off + x->next_pos, budget - done),
                    &n);
    done += n;
    j->cur += n;
    if (r < 0)
      return r;
  }
  *moved = done;
  if (x->next == x->rt.nplan && retarget_plan_done (&x->rt))
    return 1;
  return checkpoint (j, x);
}

/* ---- finishing ---- */

static int
rt_finish (struct qc_job *j, bool ok)
{
  struct rtjob *x = j->priv;
  struct layer *l = &x->rt.c->layers[0];
  int r;

  /* Stopped early, what was written is made durable all the same:
   * IMAGE stays consistent and a rerun starts from there. */
  r = l->ops->flush (l->st);
  if (!ok || r < 0)
    return r;
  if ((r = l->ops->set_backing (l->st, x->rt.name, x->rt.format)) < 0)
    return r;
  if (x->rt.name)
    job_set_result (j, "%s: now backed by %s (%s)", l->path, x->rt.name,
                    x->rt.format);
  else
    job_set_result (j, "%s: no backing file now", l->path);
  return 0;
}

static void
rt_free (void *priv)
{
  struct rtjob *x = priv;

  if (x == NULL)
    return;
  if (x->eng) {
    struct layer *l = &x->rt.c->layers[0];
    l->ops->set_data_sink (l->st, NULL);
    engine_free (x->eng);
  }
  chain_close (x->rt.nc);
  chain_close (x->rt.c);
  free (x->rt.name);
  free (x->rt.format);
  retarget_plan_free (&x->rt);
  free (x->nbuf);
  free (x);
}

static const struct job_ops retarget_ops = {
  .step = rt_step,
  .finish = rt_finish,
  .free = rt_free,
};

/* ---- starting ---- */

static void
set_direct (struct chain *c)
{
  unsigned i;

  for (i = 0; c != NULL && i < c->n; i++)
    io_set_direct (c->layers[i].io);
}

static int
rt_setup (struct rtjob *x)
{
  struct retarget *rt = &x->rt;
  struct layer *l = &rt->c->layers[0];
  void *nb;
  int r;

  rt->size = l->info.virtual_size;
  rt->gran = l->info.cluster_size ? l->info.cluster_size : 4096;
  if ((l->info.flags & QC_INFO_EXTENDED_L2) && rt->gran >= 32 * 512)
    rt->gran /= 32;
  x->bufsize = MAX ((size_t) CHUNK, (size_t) rt->gran);
  /* Aligned, so that whole chunks can go O_DIRECT (the pool's are). */
  if (posix_memalign (&nb, IO_DIO_ALIGN, x->bufsize) != 0)
    nb = NULL;
  x->nbuf = nb;
  if (nb == NULL)
    return set_error (ENOMEM, "out of memory");
  r = engine_new (DEPTH, x->bufsize, NBUFS,
                  ((rt->io_flags & QC_JOB_NO_URING) ? ENGINE_NO_URING : 0)
                  | ENGINE_DIRECT | ENGINE_NO_FIXED, &x->eng);
  if (r < 0)
    return have_error () ? r : set_error (-r, "I/O engine: %s", strerror (-r));
  x->sink = (struct data_sink) { sink_write, sink_drain, x };
  l->ops->set_data_sink (l->st, &x->sink);
  if (rt->io_flags & QC_JOB_DIRECT) {
    set_direct (rt->c);
    set_direct (rt->nc);
  }
  /* Copy-on-write in IMAGE reads the view IMAGE has now. Installed even
   * over no backing file: zero requests must then leave zeroes that hide
   * the backing file IMAGE is about to get, not just unallocated ranges. */
  chain_backing_reader (rt->c, 0, &x->below, &x->br);
  l->ops->set_backing_reader (l->st, &x->br);
  if ((r = retarget_plan_start (rt)) < 0)
    return r;
  /* A plan longer than a batch is a big job whatever its first batch. */
  if (job_direct_writes (rt->io_flags, retarget_plan_done (rt)
                         ? rt->planned_bytes : UINT64_MAX, false))
    rt->direct_writes = io_set_direct_writes (l->io);
  return 0;
}

int
retarget_start (struct retarget_params *p, uint64_t bandwidth,
                struct qc_job **out)
{
  struct rtjob *x = calloc (1, sizeof *x);
  enum qc_job_type type = p->type;
  int r;

  if (x == NULL) {
    chain_close (p->c);
    chain_close (p->nc);
    free (p->name);
    free (p->format);
    r = set_error (ENOMEM, "out of memory");
  }
  else {
    x->rt = (struct retarget) { .mode = p->mode, .c = p->c, .nc = p->nc,
                                .keep = p->keep, .name = p->name,
                                .format = p->format,
                                .io_flags = p->io_flags };
    if ((r = rt_setup (x)) < 0)
      rt_free (x);
  }
  memset (p, 0, sizeof *p);
  if (r < 0)
    return r;
  if ((r = job_new (type, &retarget_ops, x, bandwidth, out)) < 0)
    return r;
  /* Grows as later batches are planned. */
  (*out)->end = x->rt.planned_bytes;
  x->synced_ns = throttle_now_ns ();
  return 0;
}

int
retarget_open_image (const char *image, const struct qc_open_opts *opts,
                     bool no_backing, struct chain **out)
{
  struct chain_policy pol;
  int r;

  opts_to_policy (opts, &pol);
  pol.writable = true;
  pol.no_backing = no_backing;
  pol.describe_only = false;
  if ((r = chain_open (image, &pol, out)) < 0)
    return r;
  if ((*out)->layers[0].ops == &raw_format) {
    chain_close (*out);
    *out = NULL;
    return set_image_error (image, EINVAL, "is a raw image: raw images have "
                            "no backing file to change");
  }
  return 0;
}
