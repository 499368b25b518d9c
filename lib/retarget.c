/* Pull and rebase's common job: plan from layer metadata, write old-view data into IMAGE, flush, then switch its backing. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "iszero.h"
#include "rounding.h"
#include "internal.h"
#include "retarget.h"

/*
 * Safety rests on one rule: IMAGE only ever receives bytes of its current
 * guest view (the old backing view where it allocates nothing), so each
 * write, landed or not, leaves that view unchanged; only the last header
 * write, after everything is durable, changes what lies below.
 */

#define CHUNK (1u << 20)             /* read requests */
#define ZERO_CHUNK (64ull << 20)     /* one zero request: keeps steps short */
#define CHECKPOINT_NS (500ull * 1000 * 1000) /* made durable this often, so
                                                that a rerun after a crash
                                                resumes near where it was */

enum pkind {
  P_COPY,                            /* write the old view (pull) */
  P_CMP,                             /* write the old view where it differs
                                        from the new one (rebase) */
  P_ZERO,                            /* old view reads zero, new might not */
};

struct prange {
  uint64_t off, len;
  enum pkind kind;
};

struct retarget {
  enum rt_mode mode;
  struct chain *c, *nc;
  unsigned keep;
  char *name, *format;
  uint64_t size;                     /* IMAGE's virtual size */
  uint32_t gran;                     /* IMAGE's allocation unit */
  size_t bufsize;
  unsigned char *obuf, *nbuf;        /* old and new view of a chunk */
  struct chain_below below;
  struct backing_reader br;
  struct prange *plan;
  size_t nplan, cap, next;
  uint64_t next_pos;                 /* bytes of plan[next] done */
  uint64_t synced_ns;                /* last checkpoint */
};

/* ---- walking a view's allocation at increasing offsets ---- */

enum vclass {
  V_SAME,                            /* the walked layers leave it to below */
  V_DATA,                            /* may hold non-zero bytes */
  V_ZERO,                            /* reads as zeroes */
};

struct vwalk {
  struct chain *c;                   /* NULL: an empty view (zeroes) */
  unsigned depth, stop;              /* layers depth..stop-1 */
  uint64_t limit;                    /* nothing at or past it is asked */
  uint64_t end;                      /* the cached run ends here */
  enum vclass cls;
};

static void
vwalk_init (struct vwalk *w, struct chain *c, unsigned depth, unsigned stop,
            uint64_t limit)
{
  w->c = c;
  w->depth = depth;
  w->stop = stop;
  w->limit = limit;
  w->end = 0;
}

/* The class of the run at off, and where that run ends. Calls come at
 * increasing offsets, so each layer's tables are read once. */
static int
vwalk_at (struct vwalk *w, uint64_t off, enum vclass *cls, uint64_t *end)
{
  struct qc_extent e;
  uint64_t size;
  int r;

  if (off >= w->end) {
    if (w->c == NULL || w->depth >= w->c->n
        || off >= (size = w->c->layers[w->depth].info.virtual_size)) {
      /* Past a layer's end its view reads zero, whatever lies below. */
      w->cls = V_ZERO;
      w->end = UINT64_MAX;
    }
    else {
      r = chain_block_status_above (w->c, w->depth, w->stop, off,
                                    MIN (size, w->limit) - off, &e);
      if (r < 0)
        return r;
      if (e.length == 0)
        return set_image_error (w->c->layers[w->depth].path, EIO,
                                "empty extent at %" PRIu64, off);
      w->cls = e.zero ? V_ZERO : e.present ? V_DATA : V_SAME;
      w->end = off + e.length;
    }
  }
  *cls = w->cls;
  *end = w->end;
  return 0;
}

/* ---- planning ---- */

struct planner {
  struct retarget *rt;
  struct vwalk old;                  /* IMAGE's backing view (layers above
                                        `keep` only, when it stays) */
  struct vwalk below;                /* the view of layer `keep` */
  struct vwalk new;                  /* RT_REBASE_OTHER: the new view */
  uint64_t u0, u1;                   /* the run IMAGE leaves to its backing */
};

static int
plan_push (struct retarget *rt, enum pkind kind, uint64_t a, uint64_t b)
{
  struct prange *last = rt->nplan ? &rt->plan[rt->nplan - 1] : NULL;

  if (last && last->kind == kind && last->off + last->len == a) {
    last->len += b - a;
    return 0;
  }
  if (rt->nplan == rt->cap) {
    size_t cap = rt->cap ? rt->cap * 2 : 256;
    struct prange *p = reallocarray (rt->plan, cap, sizeof *p);
    if (p == NULL)
      return set_error (ENOMEM, "out of memory");
    rt->plan = p;
    rt->cap = cap;
  }
  rt->plan[rt->nplan++] = (struct prange) { a, b - a, kind };
  return 0;
}

/* b rounded up to a multiple of g, but not past lim (b <= lim). */
static uint64_t
round_up_within (uint64_t b, uint64_t g, uint64_t lim)
{
  uint64_t rem = b % g;

  if (rem == 0)
    return b;
  return lim - b <= g - rem ? lim : b + (g - rem);
}

/* Plan [a, b); data ranges widen to whole allocation units of IMAGE
 * (never past the run IMAGE leaves unallocated, nor back over what is
 * planned), so that writes need no copy-on-write. */
static int
plan_add (struct planner *pl, enum pkind kind, uint64_t a, uint64_t b)
{
  struct retarget *rt = pl->rt;
  uint64_t g = rt->gran;

  if (kind != P_ZERO) {
    a = MAX (ROUND_DOWN (a, g), pl->u0);
    b = round_up_within (b, g, pl->u1);
  }
  if (rt->nplan) {
    const struct prange *last = &rt->plan[rt->nplan - 1];
    a = MAX (a, last->off + last->len);
  }
  return a < b ? plan_push (rt, kind, a, b) : 0;
}

/* [a, b) reads zero in the old view: it matters where the view that
 * stays below reads something else. */
static int
plan_zero (struct planner *pl, uint64_t a, uint64_t b)
{
  enum pkind kind = pl->rt->mode == RT_PULL ? P_ZERO : P_CMP;
  enum vclass cls;
  uint64_t end;
  int r;

  while (a < b) {
    if ((r = vwalk_at (&pl->below, a, &cls, &end)) < 0)
      return r;
    end = MIN (end, b);
    if (cls == V_DATA && (r = plan_add (pl, kind, a, end)) < 0)
      return r;
    a = end;
  }
  return 0;
}

/* One run [u0, u1) that IMAGE leaves to its backing. */
static int
plan_run (struct planner *pl)
{
  struct retarget *rt = pl->rt;
  uint64_t off, end, nend;
  enum vclass oc, ncls;
  int r = 0;

  for (off = pl->u0; off < pl->u1 && r == 0; off = end) {
    if ((r = vwalk_at (&pl->old, off, &oc, &end)) < 0)
      break;
    end = MIN (end, pl->u1);
    if (rt->mode == RT_REBASE_OTHER) {
      if ((r = vwalk_at (&pl->new, off, &ncls, &nend)) < 0)
        break;
      end = MIN (end, nend);
      if (oc == V_DATA || ncls == V_DATA)
        r = plan_add (pl, P_CMP, off, end);
    }
    else if (oc == V_DATA)
      r = plan_add (pl, rt->mode == RT_PULL ? P_COPY : P_CMP, off, end);
    else if (oc == V_ZERO)
      r = plan_zero (pl, off, end);
  }
  return r;
}

static int
plan (struct retarget *rt)
{
  struct layer *l = &rt->c->layers[0];
  struct planner pl = { .rt = rt };
  struct layer_extent le;
  uint64_t off;
  bool other = rt->mode == RT_REBASE_OTHER;
  int r;

  /* Nothing above the layer that stays: nothing to move. */
  if (!other && rt->keep <= 1)
    return 0;
  vwalk_init (&pl.old, rt->c, 1, other ? rt->c->n : rt->keep, rt->size);
  vwalk_init (&pl.below, rt->c, rt->keep, rt->c->n, rt->size);
  vwalk_init (&pl.new, rt->nc, 0, rt->nc ? rt->nc->n : 0, rt->size);
  for (off = 0; off < rt->size; off += le.len) {
    memset (&le, 0, sizeof le);
    if ((r = l->ops->status (l->st, off, rt->size - off, &le)) < 0)
      return r;
    if (le.len == 0 || le.len > rt->size - off)
      return set_image_error (l->path, EIO, "format driver answered %"
                              PRIu64 " bytes at %" PRIu64, le.len, off);
    if (le.type != EXT_UNALLOC)
      continue;
    pl.u0 = off;
    pl.u1 = off + le.len;
    if ((r = plan_run (&pl)) < 0)
      return r;
  }
  return 0;
}

/* ---- moving data into IMAGE ---- */

enum piece { PC_SKIP, PC_ZERO, PC_DATA };

static int
write_run (struct retarget *rt, enum piece kind, uint64_t off, size_t pos,
           size_t n)
{
  struct layer *l = &rt->c->layers[0];

  if (n == 0 || kind == PC_SKIP)
    return 0;
  if (kind == PC_ZERO)
    return l->ops->zero (l->st, off + pos, n);
  return l->ops->pwrite (l->st, rt->obuf + pos, n, off + pos);
}

/* Write the old view of [off, off+n) held in obuf, cut at IMAGE's units:
 * units equal to newv's are skipped (newv NULL: none), all-zero ones
 * become zero requests; neighbours of one kind go in one request. */
static int
write_pieces (struct retarget *rt, uint64_t off, size_t n,
              const unsigned char *newv)
{
  enum piece run = PC_SKIP, k;
  size_t pos = 0, start = 0, len;
  int r;

  while (pos < n) {
    len = (size_t) MIN ((uint64_t) (n - pos),
                        ROUND_UP (off + pos + 1, (uint64_t) rt->gran)
                        - (off + pos));
    if (newv && memcmp (rt->obuf + pos, newv + pos, len) == 0)
      k = PC_SKIP;
    else
      k = is_zero (rt->obuf + pos, len) ? PC_ZERO : PC_DATA;
    if (k != run) {
      if ((r = write_run (rt, run, off, start, pos - start)) < 0)
        return r;
      run = k;
      start = pos;
    }
    pos += len;
  }
  return write_run (rt, run, off, start, pos - start);
}

/* The old view: what IMAGE's backing chain reads now. */
static int
read_old (struct retarget *rt, uint64_t off, size_t n)
{
  if (rt->c->n < 2) {
    memset (rt->obuf, 0, n);
    return 0;
  }
  return chain_read (rt->c, 1, rt->obuf, n, off);
}

/* The view IMAGE's new backing file will give. */
static int
read_new (struct retarget *rt, uint64_t off, size_t n)
{
  if (rt->mode == RT_REBASE_KEEP)
    return chain_read (rt->c, rt->keep, rt->nbuf, n, off);
  if (rt->nc == NULL) {
    memset (rt->nbuf, 0, n);
    return 0;
  }
  return chain_read (rt->nc, 0, rt->nbuf, n, off);
}

static int
move_chunk (struct retarget *rt, enum pkind kind, uint64_t off, size_t n)
{
  int r;

  if (kind == P_CMP && (r = read_new (rt, off, n)) < 0)
    return r;
  if ((r = read_old (rt, off, n)) < 0)
    return r;
  return write_pieces (rt, off, n, kind == P_CMP ? rt->nbuf : NULL);
}

/* A chunk of at most a buffer, and about `avail` bytes when throttled
 * (rounded up to a unit of IMAGE, which is never written in halves). */
static size_t
chunk_len (const struct retarget *rt, uint64_t off, uint64_t left,
           uint64_t avail)
{
  uint64_t n = MIN (left, (uint64_t) rt->bufsize), upto;

  if (avail < n) {
    upto = ROUND_UP (off + avail, (uint64_t) rt->gran) - off;
    n = MIN (n, upto);
  }
  return (size_t) n;
}

/* Make what is written durable now and then: the header still names the
 * old backing, so this only saves a rerun work. */
static int
checkpoint (struct retarget *rt)
{
  struct layer *l = &rt->c->layers[0];
  uint64_t now = throttle_now_ns ();
  int r;

  if (now - rt->synced_ns < CHECKPOINT_NS)
    return 0;
  if ((r = l->ops->flush (l->st)) < 0)
    return r;
  rt->synced_ns = throttle_now_ns ();
  return 0;
}

static int
rt_step (struct qc_job *j, uint64_t budget, uint64_t *moved)
{
  struct retarget *rt = j->priv;
  uint64_t done = 0;
  int r;

  while (rt->next < rt->nplan) {
    const struct prange *p = &rt->plan[rt->next];
    struct layer *l = &rt->c->layers[0];
    uint64_t off = p->off + rt->next_pos, left = p->len - rt->next_pos, n;

    if (p->kind == P_ZERO) {
      n = MIN (left, ZERO_CHUNK);
      r = l->ops->zero (l->st, off, n);
    }
    else {
      if (done >= budget)
        break;
      n = chunk_len (rt, off, left, budget - done);
      r = move_chunk (rt, p->kind, off, (size_t) n);
      done += n;
      j->cur += n;
    }
    if (r < 0)
      return r;
    rt->next_pos += n;
    if (rt->next_pos == p->len) {
      rt->next++;
      rt->next_pos = 0;
    }
  }
  *moved = done;
  if (rt->next == rt->nplan)
    return 1;
  return checkpoint (rt);
}

/* ---- finishing ---- */

static int
rt_finish (struct qc_job *j, bool ok)
{
  struct retarget *rt = j->priv;
  struct layer *l = &rt->c->layers[0];
  int r;

  /* Stopped early, what was written is made durable all the same:
   * IMAGE stays consistent and a rerun starts from there. */
  r = l->ops->flush (l->st);
  if (!ok || r < 0)
    return r;
  if ((r = l->ops->set_backing (l->st, rt->name, rt->format)) < 0)
    return r;
  if (rt->name)
    job_set_result (j, "%s: now backed by %s (%s)", l->path, rt->name,
                    rt->format);
  else
    job_set_result (j, "%s: no backing file now", l->path);
  return 0;
}

static void
rt_free (void *priv)
{
  struct retarget *rt = priv;

  if (rt == NULL)
    return;
  chain_close (rt->nc);
  chain_close (rt->c);
  free (rt->name);
  free (rt->format);
  free (rt->obuf);
  free (rt->nbuf);
  free (rt->plan);
  free (rt);
}

static const struct job_ops retarget_ops = {
  .step = rt_step,
  .finish = rt_finish,
  .free = rt_free,
};

/* ---- starting ---- */

static int
rt_setup (struct retarget *rt)
{
  struct layer *l = &rt->c->layers[0];

  rt->size = l->info.virtual_size;
  rt->gran = l->info.cluster_size ? l->info.cluster_size : 4096;
  if ((l->info.flags & QC_INFO_EXTENDED_L2) && rt->gran >= 32 * 512)
    rt->gran /= 32;
  rt->bufsize = MAX ((size_t) CHUNK, (size_t) rt->gran);
  rt->obuf = malloc (rt->bufsize);
  rt->nbuf = malloc (rt->bufsize);
  if (rt->obuf == NULL || rt->nbuf == NULL)
    return set_error (ENOMEM, "out of memory");
  /* Copy-on-write in IMAGE reads the view IMAGE has now. Installed even
   * over no backing file: zero requests must then leave zeroes that hide
   * the backing file IMAGE is about to get, not just unallocated ranges. */
  chain_backing_reader (rt->c, 0, &rt->below, &rt->br);
  l->ops->set_backing_reader (l->st, &rt->br);
  return rt->mode == RT_NAME_ONLY ? 0 : plan (rt);
}

int
retarget_start (struct retarget_params *p, uint64_t bandwidth,
                struct qc_job **out)
{
  struct retarget *rt = calloc (1, sizeof *rt);
  enum qc_job_type type = p->type;
  uint64_t end = 0;
  size_t i;
  int r;

  if (rt == NULL) {
    chain_close (p->c);
    chain_close (p->nc);
    free (p->name);
    free (p->format);
    r = set_error (ENOMEM, "out of memory");
  }
  else {
    *rt = (struct retarget) { .mode = p->mode, .c = p->c, .nc = p->nc,
                              .keep = p->keep, .name = p->name,
                              .format = p->format };
    if ((r = rt_setup (rt)) < 0)
      rt_free (rt);
  }
  memset (p, 0, sizeof *p);
  if (r < 0)
    return r;
  for (i = 0; i < rt->nplan; i++)
    if (rt->plan[i].kind != P_ZERO)
      end += rt->plan[i].len;
  if ((r = job_new (type, &retarget_ops, rt, bandwidth, out)) < 0)
    return r;
  rt->synced_ns = throttle_now_ns ();
  (*out)->end = end;
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
