/* Ordered write-back: data, refcounts, L2 tables, L1, then deferred frees, with fsync barriers between. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

/*
 * The rules that keep a crash down to leaked clusters:
 *  - a refcount increment reaches the disk before any reference to the
 *    cluster (L2 entry, L1 entry, refcount table entry, header field);
 *  - data reaches the disk before the L2 entry that points to it;
 *  - a decrement reaches the disk only after the metadata that dropped
 *    the reference, and a freed cluster is reused only after that.
 * Guest data goes straight to the file; refcount blocks and L2 tables
 * stay in write-back caches; the L1 table is written as a dirty range.
 */

/* Guest data to the sink when there is one, everything else to the file;
 * either way the next barrier must sync it. */
static int
write_at (struct qcow2_state *s, const void *buf, size_t n, uint64_t off,
          bool data)
{
  uint64_t end;
  int r;

  if (ADD_OVERFLOW (off, (uint64_t) n, &end))
    return set_image_error (s->name, EFBIG, "write past the largest offset");
  r = data && s->sink ? s->sink->write (s->sink->opaque, buf, n, off)
    : io_pwrite (s->io, buf, n, off);
  if (r < 0)
    return r;
  s->unsynced = true;
  qcow2_note_file_end (s, end);
  return 0;
}

int
qcow2_write (struct qcow2_state *s, const void *buf, size_t n, uint64_t off)
{
  return write_at (s, buf, n, off, false);
}

int
qcow2_write_data (struct qcow2_state *s, const void *buf, size_t n,
                  uint64_t off)
{
  return write_at (s, buf, n, off, true);
}

void
qcow2_set_data_sink_op (void *st, const struct data_sink *sink)
{
  struct qcow2_state *s = st;

  s->sink = sink;
}

int
qcow2_drain_data (struct qcow2_state *s)
{
  return s->sink ? s->sink->drain (s->sink->opaque) : 0;
}

/* Everything written so far durable: queued data written, then fsync. */
static int
sync_all (struct qcow2_state *s)
{
  int r;

  if ((r = qcow2_drain_data (s)) < 0)
    return r;
  if (!s->unsynced)
    return 0;
  r = s->io->ops->flush (s->io);
  if (r < 0)
    return r;
  s->unsynced = false;
  return 0;
}

int
qcow2_barrier (struct qcow2_state *s)
{
  /* Queued data must be written before the fsync that orders it ahead of
   * the metadata pointing to it; an unordered file only drains it, to
   * keep the memory it holds bounded. */
  if (s->flags & FMT_OPEN_UNORDERED)
    return qcow2_drain_data (s);
  return sync_all (s);
}

int
qcow2_writeback_l2 (struct qcow2_state *s)
{
  int r;

  if (s->l2.nb_dirty == 0)
    return 0;
  r = qcow2_refcount_writeback (s);
  if (r == 0)
    r = qcow2_barrier (s);
  if (r < 0)
    return r;
  r = qcow2_l2_cache_write_dirty (&s->l2, s->io);
  s->unsynced = true;
  return r;
}

void
qcow2_l1_dirty (struct qcow2_state *s, uint64_t i)
{
  if (s->l1_dirty_hi == s->l1_dirty_lo)
    {
      s->l1_dirty_lo = i;
      s->l1_dirty_hi = i + 1;
      return;
    }
  s->l1_dirty_lo = MIN (s->l1_dirty_lo, i);
  s->l1_dirty_hi = MAX (s->l1_dirty_hi, i + 1);
}

/* The dirty L1 entries in one write. */
static int
write_l1 (struct qcow2_state *s)
{
  uint64_t lo = s->l1_dirty_lo, n = s->l1_dirty_hi - lo, i, *buf;
  int r;

  buf = malloc (n * sizeof *buf);
  if (buf == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < n; i++)
    put_be64 (&buf[i], s->l1[lo + i]);
  r = qcow2_write (s, buf, n * sizeof *buf, s->h.l1_table_offset + lo * 8);
  free (buf);
  if (r == 0)
    s->l1_dirty_lo = s->l1_dirty_hi = 0;
  return r;
}

int
qcow2_flush_op (void *st)
{
  struct qcow2_state *s = st;
  int r;

  if (!s->writable)
    return 0;
  /* Refcounts (and a moved refcount table), barrier, L2 tables. */
  r = qcow2_refcount_writeback (s);
  if (r == 0)
    r = qcow2_writeback_l2 (s);
  if (r == 0 && s->l1_dirty_hi > s->l1_dirty_lo)
    {
      r = qcow2_barrier (s);
      if (r == 0)
        r = write_l1 (s);
    }
  if (r == 0 && s->nb_pending)
    {
      r = qcow2_barrier (s);
      if (r == 0)
        r = qcow2_apply_pending_frees (s);
      if (r == 0)
        r = qcow2_refcount_writeback (s);
    }
  if (r == 0)
    r = sync_all (s);
  return r;
}

int
qcow2_write_header_fields (struct qcow2_state *s)
{
  unsigned char buf[sizeof (struct qcow2_header_be)];
  size_t n;

  n = qcow2_header_encode (&s->h, buf);
  return qcow2_write (s, buf, n, 0);
}
