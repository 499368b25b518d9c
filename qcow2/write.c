/* Guest writes: allocation in contiguous runs, copy-on-write of (sub)clusters and shared clusters, L2 updates. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

enum kind {
  K_INPLACE,         /* cluster of our own (refcount 1): write into it */
  K_NEW_FULL,        /* new cluster holding the whole old content */
  K_NEW_SPARSE,      /* extended L2, no cluster yet: only touched subclusters */
};

/* One guest write: the caller's buffer and direct writes being merged. */
struct wreq {
  struct qcow2_state *s;
  const unsigned char *buf;
  uint64_t off, end;             /* guest range of buf */
  uint64_t acc_host;             /* pending direct write */
  const unsigned char *acc_p;
  size_t acc_len;
  size_t nupd;
};

uint64_t
qcow2_l2_get (const struct qcow2_state *s, const unsigned char *t,
              uint64_t i, uint64_t *bitmap)
{
  const unsigned char *p = t + i * s->l2_entry_size;

  *bitmap = s->g.extended_l2 ? get_be64 (p + 8) : 0;
  return get_be64 (p);
}

void
qcow2_l2_put (const struct qcow2_state *s, unsigned char *t, uint64_t i,
              uint64_t entry, uint64_t bitmap)
{
  unsigned char *p = t + i * s->l2_entry_size;

  put_be64 (p, entry);
  if (s->g.extended_l2)
    put_be64 (p + 8, bitmap);
}

int
qcow2_view_read (struct qcow2_state *s, void *buf, size_t n, uint64_t off)
{
  size_t in = off < s->h.size ? (size_t) MIN ((uint64_t) n, s->h.size - off) : 0;

  /* Past the virtual size nothing shows through: zeroes. */
  memset ((char *) buf + in, 0, n - in);
  return in ? qcow2_read_range (s, buf, in, off, true) : 0;
}

/* True when the cluster entry points to is ours alone (refcount 1). */
static int
host_writable (struct qcow2_state *s, uint64_t entry, bool *yes)
{
  uint64_t host = entry & QCOW2_OFFSET_MASK, rc;
  int r;

  *yes = true;
  if (entry & QCOW2_OFLAG_COPIED)
    return 0;
  r = qcow2_get_refcount (s, host >> s->h.cluster_bits, &rc);
  if (r < 0)
    return r;
  if (rc == 0)
    return set_image_error (s->name, EIO,
                            "cluster 0x%" PRIx64 " is in use but has "
                            "refcount 0 (image corrupt; run qchain check "
                            "--repair all)", host);
  *yes = rc == 1;
  return 0;
}

/* A copy of a shared L2 table at a new cluster. Its data clusters are
 * already counted once per table referencing them, so only the COPIED
 * flags change: every cluster it names is shared now. */
static int
copy_l2 (struct qcow2_state *s, uint64_t l1_idx, uint64_t old,
         unsigned char **t, uint64_t *l2_off)
{
  const unsigned char *src;
  uint64_t c, i, e, bm, n = 1ull << s->l2_bits;
  int r;

  r = qcow2_l2_cache_get (&s->l2, s->io, old, &src);
  if (r < 0)
    return r;
  memcpy (s->l2tmp, src, s->cluster_size);
  for (i = 0; i < n; i++)
    {
      e = qcow2_l2_get (s, s->l2tmp, i, &bm);
      qcow2_l2_put (s, s->l2tmp, i, e & ~QCOW2_OFLAG_COPIED, bm);
    }
  r = qcow2_alloc_contig (s, 1, &c);
  if (r == 0)
    r = qcow2_l2_cache_get_new (&s->l2, s->io, c << s->h.cluster_bits, t);
  if (r < 0)
    return r;
  memcpy (*t, s->l2tmp, s->cluster_size);
  *l2_off = c << s->h.cluster_bits;
  s->l1[l1_idx] = *l2_off | QCOW2_OFLAG_COPIED;
  qcow2_l1_dirty (s, l1_idx);
  return qcow2_free_later (s, old >> s->h.cluster_bits, 1);
}

int
qcow2_l2_for_write (struct qcow2_state *s, uint64_t l1_idx,
                    unsigned char **t, uint64_t *l2_off)
{
  uint64_t e = s->l1[l1_idx], off, c;
  bool mine;
  int r;

  r = qcow2_l1_decode (&s->g, l1_idx, e, &off);
  if (r < 0)
    return r;
  if (off == 0)
    {
      r = qcow2_alloc_contig (s, 1, &c);
      if (r == 0)
        r = qcow2_l2_cache_get_new (&s->l2, s->io, c << s->h.cluster_bits,
                                    t);
      if (r < 0)
        return r;
      *l2_off = c << s->h.cluster_bits;
      s->l1[l1_idx] = *l2_off | QCOW2_OFLAG_COPIED;
      qcow2_l1_dirty (s, l1_idx);
      return 0;
    }
  r = host_writable (s, e, &mine);
  if (r < 0)
    return r;
  if (!mine)
    return copy_l2 (s, l1_idx, off, t, l2_off);
  if (!(e & QCOW2_OFLAG_COPIED))
    {
      s->l1[l1_idx] = e | QCOW2_OFLAG_COPIED;
      qcow2_l1_dirty (s, l1_idx);
    }
  *l2_off = off;
  return qcow2_l2_cache_get_mut (&s->l2, s->io, off, t);
}

static int
acc_flush (struct wreq *w)
{
  int r;

  if (w->acc_len == 0)
    return 0;
  r = qcow2_write_data (w->s, w->acc_p, w->acc_len, w->acc_host);
  w->acc_len = 0;
  return r;
}

/* Direct writes from the caller's buffer merge while both the host and
 * the buffer are contiguous: a sequential run is one io_pwrite. */
static int
acc_add (struct wreq *w, uint64_t host, uint64_t guest, size_t len)
{
  const unsigned char *p = w->buf + (guest - w->off);
  int r;

  if (w->acc_len && w->acc_host + w->acc_len == host
      && w->acc_p + w->acc_len == p)
    {
      w->acc_len += len;
      return 0;
    }
  r = acc_flush (w);
  w->acc_host = host;
  w->acc_p = p;
  w->acc_len = len;
  return r;
}

/* [ca, cb) of the caller's data over the view of [x, x+len) of guest
 * cluster g, written at host. */
static int
write_merged (struct wreq *w, uint64_t host, uint64_t g, uint64_t x,
              uint64_t len, uint64_t ca, uint64_t cb)
{
  struct qcow2_state *s = w->s;
  int r;

  r = qcow2_view_read (s, s->wbuf, len, g + x);
  if (r < 0)
    return r;
  memcpy (s->wbuf + (ca - x), w->buf + (g + ca - w->off), cb - ca);
  return qcow2_write (s, s->wbuf, len, host + x);
}

/* Subclusters of [a, b) in cluster g at host: those written whole, or
 * already allocated, from the buffer; the others completed from the view
 * below (copy-on-write of the subcluster only). */
static int
write_subclusters (struct wreq *w, uint64_t host, uint64_t g, uint64_t a,
                   uint64_t b, uint32_t alloc)
{
  unsigned scb = w->s->sc_bits;
  uint64_t scs = 1ull << scb, sc, x, ca, cb;
  int r;

  for (sc = a >> scb; (sc << scb) < b; sc++)
    {
      x = sc << scb;
      ca = MAX (a, x);
      cb = MIN (b, x + scs);
      if ((ca == x && cb == x + scs) || (alloc >> sc & 1))
        r = acc_add (w, host + ca, g + ca, cb - ca);
      else
        r = write_merged (w, host, g, x, scs, ca, cb);
      if (r < 0)
        return r;
    }
  return 0;
}

static uint32_t
touched_mask (const struct qcow2_state *s, uint64_t a, uint64_t b)
{
  unsigned lo = a >> s->sc_bits, hi = (b - 1) >> s->sc_bits;
  uint32_t upto = hi >= 31 ? UINT32_MAX : (1u << (hi + 1)) - 1;

  return upto & ~((1u << lo) - 1);
}

static int
classify (struct qcow2_state *s, const unsigned char *t, uint64_t i,
          enum kind *k)
{
  uint64_t bm, e = qcow2_l2_get (s, t, i, &bm);
  bool mine;
  int r;

  if ((e & QCOW2_OFLAG_COMPRESSED))
    *k = K_NEW_FULL;
  else if ((e & QCOW2_OFFSET_MASK) == 0)
    *k = s->g.extended_l2 ? K_NEW_SPARSE : K_NEW_FULL;
  else
    {
      r = host_writable (s, e, &mine);
      if (r < 0)
        return r;
      *k = mine ? K_INPLACE : K_NEW_FULL;
    }
  return 0;
}

/* Guest cluster g, entry i of t, for [a, b) of it: host is the new
 * cluster (K_NEW_*) or 0. Records the L2 change. */
static int
write_cluster (struct wreq *w, const unsigned char *t, uint64_t i,
               uint64_t g, enum kind k, uint64_t host)
{
  struct qcow2_state *s = w->s;
  uint64_t cs = s->cluster_size, bm, e = qcow2_l2_get (s, t, i, &bm);
  uint64_t a = MAX (w->off, g) - g, b = MIN (w->end, g + cs) - g;
  uint32_t touched = touched_mask (s, a, b), alloc = (uint32_t) bm;
  uint32_t zero = (uint32_t) (bm >> 32);
  struct qcow2_l2_upd *u = &s->upd[w->nupd];
  int r;

  u->idx = i;
  u->old = 0;
  if (k == K_INPLACE)
    {
      host = e & QCOW2_OFFSET_MASK;
      if (!s->g.extended_l2)
        alloc = (e & QCOW2_OFLAG_ZERO) ? 0 : 1;
      r = write_subclusters (w, host, g, a, b, alloc);
      u->entry = (e | QCOW2_OFLAG_COPIED)
        & ~(s->g.extended_l2 ? 0 : QCOW2_OFLAG_ZERO);
    }
  else
    {
      if (k == K_NEW_SPARSE)
        {
          r = write_subclusters (w, host, g, a, b, 0);
          alloc = 0;
        }
      else if (a == 0 && b == cs)
        r = acc_add (w, host, g, cs);
      else
        r = write_merged (w, host, g, 0, cs, a, b);
      if (e & QCOW2_OFLAG_COMPRESSED)
        alloc = UINT32_MAX, zero = 0;   /* all of it is data now */
      u->entry = host | QCOW2_OFLAG_COPIED;
      u->old = e;
    }
  u->bitmap = (uint64_t) (alloc | touched)
    | (uint64_t) (zero & ~touched) << 32;
  if (r == 0)
    w->nupd++;
  return r;
}

/* The changes recorded for the chunk, once its data writes are issued. */
static int
apply_updates (struct wreq *w, uint64_t l2_off)
{
  struct qcow2_state *s = w->s;
  unsigned char *t;
  size_t j;
  int r;

  r = qcow2_l2_cache_get_mut (&s->l2, s->io, l2_off, &t);
  for (j = 0; j < w->nupd && r == 0; j++)
    {
      struct qcow2_l2_upd *u = &s->upd[j];

      qcow2_l2_put (s, t, u->idx, u->entry, u->bitmap);
      r = qcow2_free_entry_later (s, u->old);
    }
  w->nupd = 0;
  return r;
}

/* [off, end) within one L2 table and at most QCOW2_CHUNK_MAX clusters. */
static int
write_chunk (struct wreq *w, uint64_t off, uint64_t end)
{
  struct qcow2_state *s = w->s;
  unsigned cb = s->h.cluster_bits;
  uint64_t mask = (1ull << s->l2_bits) - 1, l2_off, i, j, last, h0, got, n;
  uint64_t g0 = ROUND_DOWN (off, (uint64_t) s->cluster_size);
  unsigned char *t;
  enum kind k;
  int r;

  r = qcow2_l2_for_write (s, off >> (cb + s->l2_bits), &t, &l2_off);
  if (r < 0)
    return r;
  i = (off >> cb) & mask;
  last = ((end - 1) >> cb) & mask;
  while (i <= last)
    {
      uint64_t g = g0 + ((i - ((off >> cb) & mask)) << cb);

      r = classify (s, t, i, &k);
      if (r == 0 && k == K_INPLACE)
        {
          r = write_cluster (w, t, i, g, k, 0);
          i++;
        }
      else if (r == 0)
        {
          /* The longest run of clusters needing new ones: one allocation,
           * contiguous on the host. */
          enum kind kj = k;

          for (j = i + 1; j <= last; j++)
            {
              r = classify (s, t, j, &kj);
              if (r < 0 || kj == K_INPLACE)
                break;
            }
          if (r == 0)
            r = qcow2_alloc_clusters (s, j - i, &h0, &got);
          for (n = 0; r == 0 && n < got; n++)
            {
              r = classify (s, t, i + n, &k);
              if (r == 0)
                r = write_cluster (w, t, i + n, g + (n << cb), k,
                                   (h0 + n) << cb);
            }
          i += got;
        }
      if (r < 0)
        {
          w->nupd = 0;           /* allocated clusters leak; no harm */
          return r;
        }
    }
  r = acc_flush (w);
  if (r < 0)
    {
      w->nupd = 0;
      return r;
    }
  return apply_updates (w, l2_off);
}

static int
check_write (struct qcow2_state *s, uint64_t off, uint64_t len,
             const char *what)
{
  if (!s->writable)
    return set_image_error (s->name, EBADF, "image is not open for "
                            "writing");
  if (!range_within (off, len, s->h.size))
    return set_image_error (s->name, EINVAL,
                            "%s of %" PRIu64 " bytes at 0x%" PRIx64
                            " outside the virtual size %" PRIu64,
                            what, len, off, s->h.size);
  return 0;
}

/* End of the chunk starting at off: the L2 table's range, at most
 * QCOW2_CHUNK_MAX clusters, at most end. */
static uint64_t
chunk_end (const struct qcow2_state *s, uint64_t off, uint64_t end)
{
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  uint64_t l1_end = ((off >> shift) + 1) << shift;
  uint64_t max = ROUND_DOWN (off, (uint64_t) s->cluster_size)
    + ((uint64_t) QCOW2_CHUNK_MAX << s->h.cluster_bits);

  return MIN (MIN (end, l1_end), max);
}

int
qcow2_pwrite_op (void *st, const void *buf, size_t n, uint64_t off)
{
  struct qcow2_state *s = st;
  struct wreq w = { .s = s, .buf = buf, .off = off, .end = off + n };
  uint64_t cur, next;
  int r;

  r = check_write (s, off, n, "write");
  if (r < 0)
    return r;
  for (cur = off; cur < w.end; cur = next)
    {
      next = chunk_end (s, cur, w.end);
      r = write_chunk (&w, cur, next);
      if (r < 0)
        return r;
    }
  return 0;
}

/* ---- write-zeroes and discard ---- */

/* What a whole cluster becomes. */
enum ztarget { Z_ZERO, Z_UNALLOC, Z_WRITE };

struct zreq {
  struct qcow2_state *s;
  bool discard;
  bool unmap;                    /* whole clusters become unallocated */
  bool backing;                  /* unallocated does not read as zeroes */
};

static int
write_zeroes (struct qcow2_state *s, uint64_t off, uint64_t len)
{
  uint64_t k;
  int r;

  for (; len > 0; off += k, len -= k)
    {
      k = MIN (len, (uint64_t) s->cluster_size);
      r = qcow2_pwrite_op (s, s->zbuf, k, off);
      if (r < 0)
        return r;
    }
  return 0;
}

/* Entry i of the L2 table for guest offset g, read-only (0 without one). */
static int
peek_entry (struct qcow2_state *s, uint64_t g, uint64_t *e, uint64_t *bm)
{
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  uint64_t l1_idx = g >> shift, off;
  const unsigned char *t;
  int r;

  *e = *bm = 0;
  r = qcow2_l1_decode (&s->g, l1_idx, s->l1[l1_idx], &off);
  if (r < 0 || off == 0)
    return r;
  r = qcow2_l2_cache_get (&s->l2, s->io, off, &t);
  if (r < 0)
    return r;
  *e = qcow2_l2_get (s, t, (g >> s->h.cluster_bits)
                     & ((1ull << s->l2_bits) - 1), bm);
  return 0;
}

/* Replace the entry for guest cluster g; the old cluster is freed once
 * the new entry is durable. */
static int
set_entry (struct qcow2_state *s, uint64_t g, uint64_t e, uint64_t bm,
           uint64_t old)
{
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  unsigned char *t;
  uint64_t l2_off;
  int r;

  r = qcow2_l2_for_write (s, g >> shift, &t, &l2_off);
  if (r < 0)
    return r;
  qcow2_l2_put (s, t, (g >> s->h.cluster_bits)
                & ((1ull << s->l2_bits) - 1), e, bm);
  if (old != e && (old & QCOW2_OFFSET_MASK) != 0)
    return qcow2_free_entry_later (s, old);
  return 0;
}

static enum ztarget
whole_target (const struct zreq *z)
{
  if (z->unmap)
    return Z_UNALLOC;
  if (z->s->h.version >= 3 && (z->backing || !z->discard))
    return Z_ZERO;
  return z->backing ? Z_WRITE : Z_UNALLOC;
}

/* Standard entries: [a, b) of guest cluster g, whole when it reaches
 * the cluster's end (or the virtual size). */
static int
zero_standard (struct zreq *z, uint64_t g, uint64_t a, uint64_t b,
               bool whole, uint64_t e)
{
  struct qcow2_state *s = z->s;
  bool compressed = e & QCOW2_OFLAG_COMPRESSED;
  bool zflag = !compressed && (e & QCOW2_OFLAG_ZERO);
  bool reads_zero = zflag || (!compressed && !z->backing
                              && (e & QCOW2_OFFSET_MASK) == 0);
  enum ztarget tg = whole_target (z);
  uint64_t ne;

  if (!whole || tg == Z_WRITE)
    return reads_zero ? 0 : write_zeroes (s, g + a, b - a);
  ne = tg == Z_ZERO ? QCOW2_OFLAG_ZERO : 0;
  /* write-zeroes may keep a preallocated zero cluster */
  if (e == ne || (reads_zero && !z->discard))
    return 0;
  return set_entry (s, g, ne, 0, e);
}

static int
zero_extended (struct zreq *z, uint64_t g, uint64_t a, uint64_t b,
               bool whole, uint64_t e, uint64_t bm)
{
  struct qcow2_state *s = z->s;
  bool keep_zero = !z->unmap && (z->backing || !z->discard);
  uint32_t alloc = (uint32_t) bm, zero = (uint32_t) (bm >> 32);
  uint64_t scs = 1ull << s->sc_bits, sc, x, ca, cb, nbm;
  uint64_t part[2][2];
  unsigned np = 0, i;
  int r;

  if (whole || (e & QCOW2_OFLAG_COMPRESSED))
    {
      if (!whole)
        return write_zeroes (s, g + a, b - a);
      nbm = keep_zero ? (uint64_t) UINT32_MAX << 32 : 0;
      if (e == 0 && bm == nbm)
        return 0;
      return set_entry (s, g, 0, nbm, e);
    }
  for (sc = a >> s->sc_bits; (sc << s->sc_bits) < b; sc++)
    {
      bool sc_zero = (zero >> sc & 1)
        || (!(alloc >> sc & 1) && !z->backing);

      x = sc << s->sc_bits;
      ca = MAX (a, x);
      cb = MIN (b, x + scs);
      if (ca == x && (cb == x + scs || g + cb >= s->h.size))
        {
          alloc &= ~(1u << sc);
          if (keep_zero)
            zero |= 1u << sc;
          else
            zero &= ~(1u << sc);
        }
      else if (!sc_zero)
        {
          part[np][0] = g + ca;   /* at most the first and the last */
          part[np][1] = cb - ca;
          np++;
        }
    }
  nbm = (uint64_t) alloc | (uint64_t) zero << 32;
  r = nbm == bm ? 0 : set_entry (s, g, e, nbm, e);
  for (i = 0; i < np && r == 0; i++)
    r = write_zeroes (s, part[i][0], part[i][1]);
  return r;
}

/* Bound the memory of deferred frees on huge discards. */
#define PENDING_FLUSH_AT 65536u

static int
zero_range (struct qcow2_state *s, uint64_t off, uint64_t len, bool discard,
            bool unmap)
{
  struct zreq z = { .s = s, .discard = discard || unmap, .unmap = unmap };
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  uint64_t end = off + len, g, ce, b, e, bm;
  int r;

  r = check_write (s, off, len, discard ? "discard" : "write-zeroes");
  if (r < 0)
    return r;
  z.backing = s->br.read != NULL || s->backing_file != NULL;
  while (off < end)
    {
      /* Nothing to do where no L2 table exists and unallocated reads as
       * zeroes. */
      if (!z.backing && (s->l1[off >> shift] & QCOW2_OFFSET_MASK) == 0)
        {
          off = MIN (end, ((off >> shift) + 1) << shift);
          continue;
        }
      g = ROUND_DOWN (off, (uint64_t) s->cluster_size);
      ce = MIN (g + s->cluster_size, s->h.size);
      b = MIN (end, ce);
      if (unmap && (off != g || b != ce))
        {
          off = b;               /* a part of a cluster stays as it is */
          continue;
        }
      r = peek_entry (s, g, &e, &bm);
      if (r == 0 && s->g.extended_l2)
        r = zero_extended (&z, g, off - g, b - g, off == g && b == ce, e, bm);
      else if (r == 0)
        r = zero_standard (&z, g, off - g, b - g, off == g && b == ce, e);
      if (r == 0 && s->nb_pending >= PENDING_FLUSH_AT)
        r = qcow2_flush_op (s);
      if (r < 0)
        return r;
      off = b;
    }
  return 0;
}

int
qcow2_zero_op (void *st, uint64_t off, uint64_t len)
{
  return zero_range (st, off, len, false, false);
}

int
qcow2_discard_op (void *st, uint64_t off, uint64_t len)
{
  return zero_range (st, off, len, true, false);
}

int
qcow2_unmap_op (void *st, uint64_t off, uint64_t len)
{
  return zero_range (st, off, len, false, true);
}
