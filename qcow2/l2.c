/* L1 and L2 entry decoding: standard, compressed and extended (subcluster) entries. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

int
qcow2_l1_decode (const struct qcow2_geom *g, uint64_t l1_index,
                 uint64_t entry, uint64_t *l2_off)
{
  uint64_t off = entry & QCOW2_OFFSET_MASK;
  uint64_t cluster_size = 1ull << g->cluster_bits;

  *l2_off = 0;
  if (off == 0)
    return 0;
  if (!IS_ALIGNED (off, cluster_size))
    return set_image_error (g->name, EINVAL,
                            "misaligned L2 table offset 0x%" PRIx64
                            " in L1 entry %" PRIu64, off, l1_index);
  if (!range_within (off, cluster_size, g->file_size))
    return set_image_error (g->name, EINVAL,
                            "L1 entry %" PRIu64 " points past end of file "
                            "(L2 table at 0x%" PRIx64 ")", l1_index, off);
  *l2_off = off;
  return 0;
}

void
qcow2_compressed_split (uint32_t cluster_bits, uint64_t entry,
                        uint64_t *host_off, uint64_t *nb_sectors)
{
  /* The bigger the cluster, the more bits the sector count needs:
   * it takes bits x..61 with x = 62 - (cluster_bits - 8). */
  unsigned x = 62 - (cluster_bits - 8);

  *host_off = entry & ((1ull << x) - 1);
  *nb_sectors = (entry >> x) & ((1ull << (cluster_bits - 8)) - 1);
}

static int
classify_compressed (const struct qcow2_geom *g, uint64_t guest_off,
                     uint64_t entry, uint64_t bitmap, struct qcow2_map *m)
{
  uint64_t off, nb, len;

  if (g->extended_l2 && bitmap != 0)
    return set_image_error (g->name, EINVAL,
                            "compressed cluster at guest offset 0x%" PRIx64
                            " has a non-zero subcluster bitmap", guest_off);
  qcow2_compressed_split (g->cluster_bits, entry, &off, &nb);
  if (off >> 56)
    return set_image_error (g->name, EINVAL,
                            "compressed cluster at guest offset 0x%" PRIx64
                            " has a host offset beyond 56 bits", guest_off);
  if (off >= g->file_size)
    return set_image_error (g->name, EINVAL,
                            "compressed cluster at guest offset 0x%" PRIx64
                            " starts past end of file (host offset 0x%"
                            PRIx64 ")", guest_off, off);
  /* nb < 2^13 and off < 2^56: no overflow. The data may run past the
   * end of the file; only the part inside it exists. */
  len = (nb + 1) * QCOW2_COMPRESSED_SECTOR
    - (off & (QCOW2_COMPRESSED_SECTOR - 1));
  m->type = EXT_COMPRESSED;
  m->comp_off = off;
  m->comp_len = MIN (len, g->file_size - off);
  return 0;
}

static int
check_host (const struct qcow2_geom *g, uint64_t guest_off, uint64_t host,
            bool data)
{
  if (!IS_ALIGNED (host, 1ull << g->cluster_bits))
    return set_image_error (g->name, EINVAL,
                            "misaligned host offset 0x%" PRIx64
                            " in the L2 entry for guest offset 0x%" PRIx64,
                            host, guest_off);
  /* A preallocated zero cluster is never read, so only data must exist. */
  if (data && host >= g->file_size)
    return set_image_error (g->name, EINVAL,
                            "data for guest offset 0x%" PRIx64
                            " lies past end of file (host offset 0x%"
                            PRIx64 ")", guest_off, host);
  return 0;
}

static int
classify_standard (const struct qcow2_geom *g, uint64_t guest_off,
                   uint64_t entry, struct qcow2_map *m)
{
  uint64_t host = entry & QCOW2_OFFSET_MASK;
  int r;

  if (entry & QCOW2_OFLAG_ZERO)
    {
      if (g->version < 3)
        return set_image_error (g->name, EINVAL,
                                "zero flag set in a version 2 image (L2 "
                                "entry for guest offset 0x%" PRIx64 ")",
                                guest_off);
      m->type = EXT_ZERO;
      if (host == 0)
        return 0;
      r = check_host (g, guest_off, host, false);
      m->has_offset = true;
      m->host_off = host;
      return r;
    }
  /* Offset 0 (the COPIED bit alone means nothing without a data file). */
  if (host == 0)
    return 0;
  r = check_host (g, guest_off, host, true);
  m->type = EXT_DATA;
  m->has_offset = true;
  m->host_off = host;
  return r;
}

static int
classify_extended (const struct qcow2_geom *g, uint64_t guest_off,
                   uint64_t entry, uint64_t bitmap, unsigned sc,
                   struct qcow2_map *m)
{
  uint64_t host = entry & QCOW2_OFFSET_MASK;
  uint32_t alloc = (uint32_t) bitmap, zero = (uint32_t) (bitmap >> 32);
  uint64_t sc_off = (uint64_t) sc << (g->cluster_bits - 5);
  int r;

  if (alloc & zero)
    return set_image_error (g->name, EINVAL,
                            "subcluster both allocated and zero in the L2 "
                            "entry for guest offset 0x%" PRIx64
                            " (bitmap 0x%016" PRIx64 ")", guest_off, bitmap);
  if (host == 0)
    {
      if (alloc)
        return set_image_error (g->name, EINVAL,
                                "allocated subclusters without a host "
                                "cluster in the L2 entry for guest offset 0x%"
                                PRIx64, guest_off);
      if (zero & (1u << sc))
        m->type = EXT_ZERO;
      return 0;
    }
  /* A subcluster of an allocated cluster that is itself unallocated
   * still has a host offset, which qemu reports too. */
  if (zero & (1u << sc))
    m->type = EXT_ZERO;
  else if (alloc & (1u << sc))
    m->type = EXT_DATA;
  r = check_host (g, guest_off, host, m->type == EXT_DATA);
  m->has_offset = true;
  m->host_off = host + sc_off;
  return r;
}

int
qcow2_l2_classify (const struct qcow2_geom *g, uint64_t guest_off,
                   uint64_t entry, uint64_t bitmap, unsigned sc,
                   struct qcow2_map *m)
{
  memset (m, 0, sizeof *m);
  m->type = EXT_UNALLOC;
  if (entry & QCOW2_OFLAG_COMPRESSED)
    return classify_compressed (g, guest_off, entry, bitmap, m);
  if (g->extended_l2)
    return classify_extended (g, guest_off, entry, bitmap,
                              sc & (QCOW2_SUBCLUSTERS - 1), m);
  return classify_standard (g, guest_off, entry, m);
}
