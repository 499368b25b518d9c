/* Refcount lookups (read-only) and qemu's test for metadata preallocation. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

#define REFTABLE_OFFSET_MASK 0xfffffffffffffe00ull   /* bits 9-63 */

/* The table was checked at open: <= 8 MiB and inside the file. */
static int
load_reftable (struct qcow2_state *s)
{
  size_t i, n;
  int r;

  n = ((size_t) s->h.refcount_table_clusters << s->h.cluster_bits) / 8;
  s->reftable = malloc (n * sizeof *s->reftable);
  if (s->reftable == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (s->io, s->reftable, n * sizeof *s->reftable,
                s->h.refcount_table_offset);
  if (r < 0)
    {
      free (s->reftable);
      s->reftable = NULL;
      return r;
    }
  for (i = 0; i < n; i++)
    s->reftable[i] = get_be64 (&s->reftable[i]);
  s->reftable_entries = n;
  return 0;
}

/* Refcount block at off into s->refblock, unless it is there already. */
static int
load_refblock (struct qcow2_state *s, uint64_t index, uint64_t off)
{
  int r;

  if (s->refblock && s->refblock_off == off)
    return 0;
  if (!IS_ALIGNED (off, s->cluster_size))
    return set_image_error (s->name, EINVAL,
                            "misaligned refcount block offset 0x%" PRIx64
                            " in refcount table entry %" PRIu64, off, index);
  if (!range_within (off, s->cluster_size, s->file_size))
    return set_image_error (s->name, EINVAL,
                            "refcount table entry %" PRIu64 " points past "
                            "end of file (0x%" PRIx64 ")", index, off);
  if (s->refblock == NULL)
    {
      s->refblock = malloc (s->cluster_size);
      if (s->refblock == NULL)
        return set_error (ENOMEM, "out of memory");
    }
  s->refblock_off = 0;
  r = io_pread (s->io, s->refblock, s->cluster_size, off);
  if (r < 0)
    return r;
  s->refblock_off = off;
  return 0;
}

int
qcow2_get_refcount (struct qcow2_state *s, uint64_t cluster, uint64_t *rc)
{
  unsigned order = s->h.refcount_order;
  /* log2 of the entries in one block: cluster bits + 3 - order >= 6 */
  unsigned block_bits = s->h.cluster_bits + 3 - order;
  uint64_t index = cluster >> block_bits, i, off;
  const unsigned char *b;
  int r;

  *rc = 0;
  if (s->reftable == NULL)
    {
      r = load_reftable (s);
      if (r < 0)
        return r;
    }
  if (index >= s->reftable_entries)
    return 0;
  off = s->reftable[index] & REFTABLE_OFFSET_MASK;
  if (off == 0)
    return 0;
  r = load_refblock (s, index, off);
  if (r < 0)
    return r;
  b = s->refblock;
  i = cluster & ((1ull << block_bits) - 1);
  switch (order)
    {
    case 6: *rc = get_be64 (b + 8 * i); break;
    case 5: *rc = get_be32 (b + 4 * i); break;
    case 4: *rc = get_be16 (b + 2 * i); break;
    case 3: *rc = b[i]; break;
    default:
      /* Sub-byte widths: bit 0 is the least significant bit. */
      *rc = (b[(i << order) / 8] >> ((i << order) % 8))
        & ((1u << (1u << order)) - 1);
      break;
    }
  return 0;
}

/*
 * qemu treats an image as metadata-preallocated when clearly more clusters
 * are in use (refcount > 0) than the file has allocated on the host; data
 * clusters may then be holes that read as zero, and only then does qemu
 * ask the host file about them. Same threshold as qemu: at least
 * MAX(allocated * 10 / 9, allocated + 2) clusters in use.
 */
int
qcow2_metadata_preallocated (struct qcow2_state *s, bool *yes)
{
  uint64_t alloc, real, threshold, end, i, rc, used = 0;
  int r;

  if (s->prealloc_checked)
    {
      *yes = s->metadata_prealloc;
      return 0;
    }
  *yes = false;
  if (s->io->ops->allocated == NULL)
    goto done;
  r = s->io->ops->allocated (s->io, &alloc);
  if (r < 0)
    return r;
  real = alloc >> s->h.cluster_bits;
  threshold = MAX (real * 10 / 9, real + 2);     /* real < 2^55 */
  end = DIV_ROUND_UP (s->file_size, s->cluster_size);
  for (i = 0; i < end && used < threshold; i++)
    {
      r = qcow2_get_refcount (s, i, &rc);
      if (r < 0)
        return r;
      used += rc != 0;
    }
  s->metadata_prealloc = used >= threshold;
 done:
  s->prealloc_checked = true;
  *yes = s->metadata_prealloc;
  return 0;
}

void
qcow2_free_refcounts (struct qcow2_state *s)
{
  free (s->reftable);
  free (s->refblock);
  s->reftable = NULL;
  s->refblock = NULL;
  s->reftable_entries = 0;
}
