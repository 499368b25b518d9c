/* Planning pull and rebase: one walk over each layer's allocation, giving the ranges to move and where their data lives. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "rounding.h"
#include "retarget.h"

/* ---- a view over layers depth..stop-1 ---- */

enum vclass {
  V_SAME,              /* the walked layers leave it to the ones below */
  V_DATA,              /* may hold non-zero bytes */
  V_ZERO,              /* reads as zeroes */
};

struct vwalk {
  struct chain *c;     /* NULL: an empty view (zeroes) */
  struct chain_cursor *cur;  /* c's layer cursors: a deep chain is asked
                                about each layer's extent once */
  unsigned depth, stop;
  uint64_t limit;      /* nothing at or past it is asked */
  uint64_t start, end; /* the run last classified */
  enum vclass cls;
  unsigned layer;      /* V_DATA: the layer holding it */
  struct layer_extent le; /* and its extent, from `start` */
};

static void
vwalk_init (struct vwalk *w, struct chain *c, struct chain_cursor *cur,
            unsigned depth, unsigned stop, uint64_t limit)
{
  memset (w, 0, sizeof *w);
  w->c = c;
  w->cur = cur;
  w->depth = depth;
  w->stop = stop;
  w->limit = limit;
}

/* Classify the run at off as chain_block_status_above would, through the
 * layer cursors. */
static int
vwalk_classify (struct vwalk *w, uint64_t off)
{
  struct chain *c = w->c;
  struct layer_extent le;
  uint64_t run = UINT64_MAX;
  unsigned d;
  int r;

  for (d = w->depth;; d++) {
    if ((r = chain_layer_status (c, w->cur, d, off,
                                 MIN (c->layers[d].info.virtual_size,
                                      w->limit) - off, &le)) < 0)
      return r;
    run = MIN (run, le.len);
    if (le.type != EXT_UNALLOC) {
      w->cls = le.type == EXT_ZERO ? V_ZERO : V_DATA;
      w->layer = d;
      w->le = le;
      break;
    }
    /* Nothing below, or a short layer below: zeroes here. */
    if (d + 1 >= c->n || off >= c->layers[d + 1].info.virtual_size) {
      w->cls = V_ZERO;
      break;
    }
    if (d + 1 >= w->stop) {
      w->cls = V_SAME;
      break;
    }
  }
  w->end = off + run;
  return 0;
}

/* The class of the run at off and where it ends; calls come at
 * increasing offsets. */
static int
vwalk_at (struct vwalk *w, uint64_t off, enum vclass *cls, uint64_t *end)
{
  int r;

  if (off < w->start || off >= w->end) {
    w->start = off;
    if (w->c == NULL || w->depth >= w->c->n
        || off >= w->c->layers[w->depth].info.virtual_size) {
      /* Past a layer's end its view reads zero, whatever lies below. */
      w->cls = V_ZERO;
      w->end = UINT64_MAX;
    }
    else if ((r = vwalk_classify (w, off)) < 0)
      return r;
  }
  *cls = w->cls;
  *end = w->end;
  return 0;
}

/* Where the old view of [off, ...) inside w's current V_DATA run lives. */
static void
vwalk_source (const struct vwalk *w, uint64_t off, struct prange *p)
{
  const struct layer *l = &w->c->layers[w->layer];

  p->layer = w->layer;
  if (w->le.type == EXT_DATA && w->le.has_offset && l->io->fd >= 0) {
    p->src = S_FILE;
    p->host = w->le.host_off + (off - w->start);
  }
  else
    p->src = S_LAYER;
}

/* ---- the plan ---- */

struct planner {
  struct retarget *rt;
  struct chain_cursor cur, ncur;  /* layer cursors of c and nc */
  struct vwalk old;    /* IMAGE's backing view (down to `keep` only,
                          when that layer stays) */
  struct vwalk below;  /* the view of layer `keep` */
  struct vwalk new;    /* RT_REBASE_OTHER: the new backing's view */
  uint64_t u0, u1;     /* a run IMAGE leaves to its backing */
  uint64_t resume;     /* the next batch starts here */
  bool done;
};

/* A batch ends at the first unit boundary after `batch` ranges (so that
 * no unit of IMAGE is split between batches), or at twice that anyway.
 * Stopping returns 1 with resume set. */
size_t retarget_plan_batch;

static int
batch_full (struct planner *pl, uint64_t off)
{
  const struct retarget *rt = pl->rt;
  size_t n = retarget_plan_batch ? retarget_plan_batch : RT_PLAN_BATCH;

  if (rt->nplan < n || (off % rt->gran != 0 && rt->nplan < 2 * n))
    return 0;
  pl->resume = off;
  return 1;
}

static bool
continues (const struct prange *last, const struct prange *p)
{
  if (last->kind != p->kind || last->src != p->src
      || last->off + last->len != p->off)
    return false;
  if (p->src == S_FILE)
    return last->layer == p->layer && last->host + last->len == p->host;
  return p->src != S_LAYER || last->layer == p->layer;
}

/* Append p, clipped so that ranges never overlap, merged with the last
 * range when it continues it. */
static int
plan_push (struct retarget *rt, struct prange p)
{
  struct prange *last = rt->nplan ? &rt->plan[rt->nplan - 1] : NULL;

  /* (also against the previous batch's last range) */
  if (rt->planned_end > p.off) {
    uint64_t cut = rt->planned_end - p.off;
    if (cut >= p.len)
      return 0;
    p.off += cut;
    p.len -= cut;
    p.host += cut;
  }
  rt->planned_end = p.off + p.len;
  if (p.kind != P_ZERO)
    rt->planned_bytes += p.len;
  if (last && continues (last, &p)) {
    last->len += p.len;
    return 0;
  }
  if (rt->nplan == rt->cap) {
    size_t cap = rt->cap ? rt->cap * 2 : 256;
    struct prange *np = reallocarray (rt->plan, cap, sizeof *np);
    if (np == NULL)
      return set_error (ENOMEM, "out of memory");
    rt->plan = np;
    rt->cap = cap;
  }
  rt->plan[rt->nplan++] = p;
  return 0;
}

/* Plan p; data ranges widen to whole allocation units of IMAGE (within
 * the run IMAGE leaves unallocated), the widening read through the view,
 * so that IMAGE's units are compared and written whole. */
static int
plan_add (struct planner *pl, struct prange p)
{
  uint64_t g = pl->rt->gran, a = p.off, b = p.off + p.len, wa, wb;
  int r;

  if (p.kind == P_ZERO)
    return plan_push (pl->rt, p);
  wa = MAX (ROUND_DOWN (a, g), pl->u0);
  wb = b % g == 0 ? b : pl->u1 - b <= g - b % g ? pl->u1 : b + (g - b % g);
  if (wa < a && (r = plan_push (pl->rt, (struct prange) {
          .off = wa, .len = a - wa, .kind = p.kind, .src = S_VIEW })) < 0)
    return r;
  if ((r = plan_push (pl->rt, p)) < 0)
    return r;
  if (wb > b)
    return plan_push (pl->rt, (struct prange) { .off = b, .len = wb - b,
                                                .kind = p.kind,
                                                .src = S_VIEW });
  return 0;
}

/* [a, b) reads zero in the old view: it matters where the view that
 * stays below reads otherwise. */
static int
plan_zero (struct planner *pl, uint64_t a, uint64_t b)
{
  enum pkind kind = pl->rt->mode == RT_PULL ? P_ZERO : P_CMP;
  enum vclass cls;
  uint64_t end;
  int r;

  while (a < b) {
    if (batch_full (pl, a))
      return 1;
    if ((r = vwalk_at (&pl->below, a, &cls, &end)) < 0)
      return r;
    end = MIN (end, b);
    if (cls == V_DATA
        && (r = plan_add (pl, (struct prange) { .off = a, .len = end - a,
                                                .kind = kind,
                                                .src = S_ZERO })) < 0)
      return r;
    a = end;
  }
  return 0;
}

/* [a, b) inside one run of the old view's walk, class oc. */
static int
plan_piece (struct planner *pl, uint64_t a, uint64_t b, enum vclass oc,
            bool new_data)
{
  struct retarget *rt = pl->rt;
  struct prange p = { .off = a, .len = b - a, .src = S_ZERO };

  if (rt->mode == RT_REBASE_OTHER) {
    if (oc != V_DATA && !new_data)
      return 0;
    p.kind = P_CMP;
  }
  else if (oc == V_ZERO)
    return plan_zero (pl, a, b);
  else if (oc == V_SAME)
    return 0;
  else
    p.kind = rt->mode == RT_PULL ? P_COPY : P_CMP;
  if (oc == V_DATA)
    vwalk_source (&pl->old, a, &p);
  return plan_add (pl, p);
}

/* One run [u0, u1) that IMAGE leaves to its backing; 1: the batch is
 * full. */
static int
plan_run (struct planner *pl)
{
  uint64_t off, end, nend;
  enum vclass oc, ncls = V_ZERO;
  int r = 0;

  for (off = pl->u0; off < pl->u1 && r == 0; off = end) {
    if (batch_full (pl, off))
      return 1;
    if ((r = vwalk_at (&pl->old, off, &oc, &end)) < 0)
      break;
    end = MIN (end, pl->u1);
    if (pl->rt->mode == RT_REBASE_OTHER) {
      if ((r = vwalk_at (&pl->new, off, &ncls, &nend)) < 0)
        break;
      end = MIN (end, nend);
    }
    r = plan_piece (pl, off, end, oc, ncls == V_DATA);
  }
  return r;
}

/* Plan from pl->resume on until the batch is full or the image done. */
static int
plan_image (struct planner *pl)
{
  struct retarget *rt = pl->rt;
  struct layer *l = &rt->c->layers[0];
  struct layer_extent le;
  uint64_t off;
  int r;

  for (off = pl->resume; off < rt->size; off += le.len) {
    memset (&le, 0, sizeof le);
    if ((r = l->ops->status (l->st, off, rt->size - off, &le)) < 0)
      return r;
    if (le.len == 0 || le.len > rt->size - off)
      return set_image_error (l->path, EIO, "format driver answered %"
                              PRIu64 " bytes at %" PRIu64, le.len, off);
    if (le.type != EXT_UNALLOC)
      continue;
    pl->u0 = off;
    pl->u1 = off + le.len;
    if ((r = plan_run (pl)) != 0)
      return r;
  }
  pl->done = true;
  return 0;
}

int
retarget_plan_more (struct retarget *rt)
{
  int r;

  rt->nplan = 0;
  if (rt->pl == NULL || rt->pl->done)
    return 0;
  r = plan_image (rt->pl);
  return r < 0 ? r : 0;
}

bool
retarget_plan_done (const struct retarget *rt)
{
  return rt->pl == NULL || rt->pl->done;
}

void
retarget_plan_free (struct retarget *rt)
{
  if (rt->pl) {
    chain_cursor_free (&rt->pl->cur);
    chain_cursor_free (&rt->pl->ncur);
    free (rt->pl);
    rt->pl = NULL;
  }
  free (rt->plan);
  rt->plan = NULL;
  rt->nplan = rt->cap = 0;
}

int
retarget_plan_start (struct retarget *rt)
{
  bool other = rt->mode == RT_REBASE_OTHER;
  struct planner *pl;
  int r;

  /* Nothing above the layer that stays: nothing to move. */
  if (rt->mode == RT_NAME_ONLY || (!other && rt->keep <= 1))
    return 0;
  if ((pl = rt->pl = calloc (1, sizeof *pl)) == NULL)
    return set_error (ENOMEM, "out of memory");
  if ((r = chain_cursor_init (&pl->cur, rt->c)) < 0
      || (rt->nc && (r = chain_cursor_init (&pl->ncur, rt->nc)) < 0))
    return r;
  pl->rt = rt;
  vwalk_init (&pl->old, rt->c, &pl->cur, 1, other ? rt->c->n : rt->keep,
              rt->size);
  vwalk_init (&pl->below, rt->c, &pl->cur, rt->keep, rt->c->n, rt->size);
  vwalk_init (&pl->new, rt->nc, &pl->ncur, 0, rt->nc ? rt->nc->n : 0,
              rt->size);
  return retarget_plan_more (rt);
}
