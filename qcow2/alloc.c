/* The cluster allocator: free-cluster scan from a forward cursor, byte packing for compressed data, deferred frees. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

/* Host offsets have 56 bits (L2 entries keep bits 9-55). */
#define MAX_HOST_CLUSTER_END(s) ((1ull << 56) >> (s)->h.cluster_bits)

void
qcow2_note_file_end (struct qcow2_state *s, uint64_t end)
{
  /* Allocated clusters count as part of the file even before their first
   * write, so the read path accepts references to them. */
  if (end > s->file_size)
    s->file_size = s->g.file_size = end;
}

static int
is_free (struct qcow2_state *s, uint64_t c, bool *yes)
{
  uint64_t rc;
  int r;

  r = qcow2_get_refcount (s, c, &rc);
  *yes = rc == 0;
  return r;
}

/* The first free cluster at or after c. */
static int
next_free (struct qcow2_state *s, uint64_t c, uint64_t *out)
{
  bool yes;
  int r;

  for (;; c++)
    {
      if (c >= MAX_HOST_CLUSTER_END (s))
        return set_image_error (s->name, EFBIG,
                                "no free cluster below the 64 PiB limit of "
                                "qcow2 host offsets");
      r = is_free (s, c, &yes);
      if (r < 0)
        return r;
      if (yes)
        {
          *out = c;
          return 0;
        }
    }
}

int
qcow2_alloc_noref (struct qcow2_state *s, uint64_t n, uint64_t *first)
{
  uint64_t c = s->free_cursor, i;
  bool yes;
  int r;

  for (;;)
    {
      r = next_free (s, c, &c);
      if (r < 0)
        return r;
      for (i = 1; i < n; i++)
        {
          r = is_free (s, c + i, &yes);
          if (r < 0)
            return r;
          if (!yes)
            break;
        }
      if (i == n)
        break;
      c += i + 1;
    }
  if (c + n > MAX_HOST_CLUSTER_END (s))
    return set_image_error (s->name, EFBIG, "image file would exceed the "
                            "64 PiB limit of qcow2 host offsets");
  s->free_cursor = c + n;
  *first = c;
  return 0;
}

static int
claim (struct qcow2_state *s, uint64_t first, uint64_t n)
{
  uint64_t i;
  int r;

  qcow2_note_file_end (s, (first + n) << s->h.cluster_bits);
  for (i = 0; i < n; i++)
    {
      r = qcow2_refcount_add (s, first + i, 1);
      if (r < 0)
        return r;
    }
  return 0;
}

int
qcow2_alloc_clusters (struct qcow2_state *s, uint64_t want, uint64_t *first,
                      uint64_t *got)
{
  uint64_t c, n = 1;
  bool yes = true;
  int r;

  r = next_free (s, s->free_cursor, &c);
  if (r < 0)
    return r;
  /* A shorter run is fine: holes get reused, and a run that reaches the
   * end of the file always has the full length. */
  while (n < want && c + n < MAX_HOST_CLUSTER_END (s))
    {
      r = is_free (s, c + n, &yes);
      if (r < 0)
        return r;
      if (!yes)
        break;
      n++;
    }
  s->free_cursor = c + n;
  *first = c;
  *got = n;
  return claim (s, c, n);
}

int
qcow2_alloc_contig (struct qcow2_state *s, uint64_t n, uint64_t *first)
{
  int r;

  r = qcow2_alloc_noref (s, n, first);
  return r < 0 ? r : claim (s, *first, n);
}

static uint64_t
refcount_max (const struct qcow2_state *s)
{
  unsigned bits = 1u << s->h.refcount_order;

  return bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
}

/* Continue in the cluster of the previous compressed data if its refcount
 * has room, spilling into the next cluster when that one is free; else
 * start a new cluster. Each cluster touched gets one more reference. */
int
qcow2_alloc_bytes (struct qcow2_state *s, uint64_t len, uint64_t *off)
{
  uint64_t cs = s->cluster_size, o = s->comp_next, c, rc, first;
  bool yes = false;
  int r;

  if (o)
    {
      c = o >> s->h.cluster_bits;
      r = qcow2_get_refcount (s, c, &rc);
      if (r < 0)
        return r;
      if (rc == 0 || rc == refcount_max (s))
        o = 0;
      else if (cs - (o & (cs - 1)) < len)
        {
          /* The refcount block for c + 1 first: a new one goes in the
           * first free cluster, which may be c + 1 itself. */
          r = qcow2_refcount_prepare (s, c + 1);
          if (r == 0)
            r = is_free (s, c + 1, &yes);
          if (r < 0)
            return r;
          if (!yes)
            o = 0;
          else
            {
              r = qcow2_refcount_add (s, c + 1, 1);
              if (r < 0)
                return r;
              qcow2_note_file_end (s, (c + 2) << s->h.cluster_bits);
            }
        }
      if (o)
        {
          r = qcow2_refcount_add (s, c, 1);
          if (r < 0)
            return r;
        }
    }
  if (o == 0)
    {
      r = qcow2_alloc_contig (s, 1, &first);
      if (r < 0)
        return r;
      o = first << s->h.cluster_bits;
    }
  *off = o;
  s->comp_next = (o + len) & (cs - 1) ? o + len : 0;
  return 0;
}

int
qcow2_free_later (struct qcow2_state *s, uint64_t first, uint64_t count)
{
  struct qcow2_free_range *p;

  if (count == 0)
    return 0;
  if (s->nb_pending)
    {
      p = &s->pending[s->nb_pending - 1];
      if (p->first + p->count == first)
        {
          p->count += count;
          return 0;
        }
    }
  if (s->nb_pending == s->cap_pending)
    {
      size_t cap = s->cap_pending ? s->cap_pending * 2 : 64;

      p = realloc (s->pending, cap * sizeof *p);
      if (p == NULL)
        return set_error (ENOMEM, "out of memory");
      s->pending = p;
      s->cap_pending = cap;
    }
  s->pending[s->nb_pending].first = first;
  s->pending[s->nb_pending].count = count;
  s->nb_pending++;
  return 0;
}

int
qcow2_free_entry_later (struct qcow2_state *s, uint64_t entry)
{
  uint64_t host, nb, last;

  if (entry & QCOW2_OFLAG_COMPRESSED)
    {
      qcow2_compressed_split (s->h.cluster_bits, entry, &host, &nb);
      /* Clusters touched by the sectors the descriptor names, as qemu
       * counts them. */
      last = ((host & ~(uint64_t) (QCOW2_COMPRESSED_SECTOR - 1))
              + (nb + 1) * QCOW2_COMPRESSED_SECTOR - 1) >> s->h.cluster_bits;
      host >>= s->h.cluster_bits;
      return qcow2_free_later (s, host, last - host + 1);
    }
  host = entry & QCOW2_OFFSET_MASK;
  if (host == 0)
    return 0;
  return qcow2_free_later (s, host >> s->h.cluster_bits, 1);
}

int
qcow2_apply_pending_frees (struct qcow2_state *s)
{
  size_t i;
  uint64_t j, c, rc;
  int r = 0;

  for (i = 0; i < s->nb_pending && r == 0; i++)
    for (j = 0; j < s->pending[i].count && r == 0; j++)
      {
        c = s->pending[i].first + j;
        r = qcow2_refcount_add (s, c, -1);
        if (r == 0)
          r = qcow2_get_refcount (s, c, &rc);
        if (r == 0 && rc == 0 && !s->append_only && c < s->free_cursor)
          s->free_cursor = c;
      }
  /* Freed bytes may be reused from now on: nothing may assume their
   * old contents any more. */
  s->nb_pending = 0;
  s->comp_next = 0;
  s->dcache_valid = false;
  return r;
}

void
qcow2_alloc_append_only (struct qcow2_state *s)
{
  uint64_t end = DIV_ROUND_UP (s->file_size, (uint64_t) s->cluster_size);

  s->append_only = true;
  s->comp_next = 0;
  if (s->free_cursor < end)
    s->free_cursor = end;
}
