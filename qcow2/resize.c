/* Growing the virtual size: header update, and a larger L1 table moved into new clusters. */
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

/* The new table is complete and durable before the header names it; the
 * old one is freed after that (a crash in between leaks one of them). The
 * virtual size in the header is the caller's to change. */
static int
grow_l1 (struct qcow2_state *s, uint64_t entries)
{
  uint64_t cs = s->cluster_size, ncl = DIV_ROUND_UP (entries * 8, cs);
  uint64_t first, i, old_off = s->h.l1_table_offset;
  uint32_t old_n = s->h.l1_size;
  uint64_t *nl1;
  unsigned char *buf;
  int r;

  nl1 = realloc (s->l1, entries * sizeof *nl1);
  if (nl1 == NULL)
    return set_error (ENOMEM, "out of memory");
  s->l1 = nl1;
  memset (nl1 + old_n, 0, (entries - old_n) * sizeof *nl1);
  buf = calloc (ncl, cs);
  if (buf == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < old_n; i++)
    put_be64 (buf + 8 * i, s->l1[i]);
  r = qcow2_alloc_contig (s, ncl, &first);
  if (r == 0)
    r = qcow2_refcount_writeback (s);
  if (r == 0)
    r = qcow2_write (s, buf, ncl * cs, first << s->h.cluster_bits);
  if (r == 0)
    r = qcow2_barrier (s);
  free (buf);
  if (r < 0)
    return r;
  s->h.l1_table_offset = first << s->h.cluster_bits;
  s->h.l1_size = (uint32_t) entries;
  r = qcow2_write_header_fields (s);
  if (r == 0)
    r = qcow2_barrier (s);
  if (r < 0)
    {
      s->h.l1_table_offset = old_off;
      s->h.l1_size = old_n;
      return r;
    }
  if (old_n)
    r = qcow2_free_later (s, old_off >> s->h.cluster_bits,
                          DIV_ROUND_UP ((uint64_t) old_n * 8, cs));
  return r < 0 ? r : qcow2_flush_op (s);
}

/* Zero [old, size) where a backing view below could show through: up to
 * the backing's size, or all of it when the header names a backing file
 * whose view was not given. */
static int
zero_from_backing (struct qcow2_state *s, uint64_t old, uint64_t size)
{
  uint64_t end;

  if (s->br.read)
    end = MIN (size, s->br.size);
  else
    end = s->backing_file ? size : 0;
  return end > old ? qcow2_zero_op (s, old, end - old) : 0;
}

int
qcow2_resize_op (void *st, uint64_t size)
{
  struct qcow2_state *s = st;
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  uint64_t entries, old = s->h.size;
  int r;

  if (!s->writable)
    return set_image_error (s->name, EBADF, "image is not open for "
                            "writing");
  if (size < s->h.size)
    return set_image_error (s->name, ENOTSUP,
                            "cannot shrink the image from %" PRIu64
                            " to %" PRIu64 " bytes", s->h.size, size);
  if (size == s->h.size)
    return 0;
  entries = (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
  if (entries > QCOW2_MAX_L1_BYTES / 8)
    return set_image_error (s->name, EFBIG,
                            "virtual size %" PRIu64 " needs an L1 table "
                            "over 32 MiB", size);
  r = qcow2_flush_op (s);
  if (r < 0)
    return r;
  if (entries > s->h.l1_size) {
    r = grow_l1 (s, entries);
    if (r < 0)
      return r;
  }
  /* The grown range must read as zeroes, not as the backing file's data
   * there: zero it, durably, before the header shows the new size, so a
   * crash in between leaves the old size. */
  s->h.size = size;
  r = zero_from_backing (s, old, size);
  if (r == 0)
    r = qcow2_flush_op (s);
  if (r == 0)
    r = qcow2_write_header_fields (s);
  if (r == 0)
    r = qcow2_barrier (s);
  if (r < 0)
    s->h.size = old;
  return r;
}
