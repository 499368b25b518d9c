/* Opening and closing the write side: what may be written, buffers, cache write-back hooks. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "qcow2.h"

static int
l2_evict_dirty (void *opaque)
{
  return qcow2_writeback_l2 (opaque);
}

static int
refuse (struct qcow2_state *s)
{
  const struct qcow2_header *h = &s->h;

  /* Repair rewrites refcounts only, never guest data: bitmaps stay true. */
  if (s->flags & FMT_OPEN_REPAIR)
    return 0;
  /* Every write would have to be recorded in the bitmaps. */
  if (s->has_bitmaps_ext || s->nb_bitmaps)
    return set_image_error (s->name, ENOTSUP,
                            "image has persistent dirty bitmaps; qchain "
                            "would leave them stale");
  if (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)
    return set_image_error (s->name, EACCES,
                            "image is marked dirty (refcounts not written "
                            "back after a crash with lazy refcounts); "
                            "repair it first (qchain check --repair all)");
  if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
    return set_image_error (s->name, EACCES,
                            "image is marked corrupt; repair it first "
                            "(qchain check --repair all)");
  return 0;
}

int
qcow2_writer_open (struct qcow2_state *s)
{
  size_t cs = s->cluster_size;
  int r;

  r = refuse (s);
  if (r == 0)
    r = qcow2_refcount_init (s);
  if (r < 0)
    return r;
  /* A new file (a copy's temporary DEST): what create wrote is not
   * durable yet, and the flush before its rename must sync it even when
   * nothing is written after (a shallow copy of an empty overlay). */
  if (s->flags & FMT_OPEN_UNORDERED)
    s->unsynced = true;
  s->wbuf = malloc (cs);
  s->zbuf = calloc (1, cs);
  s->l2tmp = malloc (cs);
  s->cwbuf = malloc (cs);
  s->upd = calloc (QCOW2_CHUNK_MAX, sizeof *s->upd);
  if (!s->wbuf || !s->zbuf || !s->l2tmp || !s->cwbuf || !s->upd)
    return set_error (ENOMEM, "out of memory");
  s->l2.evict_dirty = l2_evict_dirty;
  s->l2.opaque = s;
  s->writable = true;
  return 0;
}

void
qcow2_writer_close (struct qcow2_state *s)
{
  if (s->writable)
    {
      /* Errors were the caller's to see at its own flush. */
      qcow2_flush_op (s);
      s->writable = false;
    }
  if (s->zstd_cctx)
    qcow2_zstd_cfree (s->zstd_cctx);
  free (s->wbuf);
  free (s->zbuf);
  free (s->l2tmp);
  free (s->cwbuf);
  free (s->upd);
  free (s->pending);
  s->wbuf = s->zbuf = s->l2tmp = s->cwbuf = NULL;
  s->upd = NULL;
  s->pending = NULL;
  s->zstd_cctx = NULL;
}

void
qcow2_set_backing_reader_op (void *st, const struct backing_reader *br)
{
  struct qcow2_state *s = st;

  if (br)
    s->br = *br;
  else
    memset (&s->br, 0, sizeof s->br);
}
