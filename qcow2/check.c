/* qcow2 check: expected refcounts from every metadata reference against the on-disk refcounts (qemu-img check), and repair. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "iszero.h"
#include "rounding.h"
#include "qcow2.h"
#include "u64map.h"

/* Reserved bits as qemu tests them (its masks, so the counts agree). */
#define L1E_RESERVED      0x7f000000000001ffull
#define L2E_STD_RESERVED  0x3f000000000001feull
#define REFT_RESERVED     0x1ffull
#define BME_RESERVED      0xff000000000001feull
#define BME_OFFSET_MASK   0x00fffffffffffe00ull
#define L2_BITMAP_ALLOC   0xffffffffull

/* The expected-refcount array costs 2 bytes a host cluster: refuse files
 * that would need more than 8 GiB for it. */
#define MAX_HOST_CLUSTERS (1ull << 32)
#define RB_CACHE_SLOTS 4u
#define L1_CHUNK 8192u               /* L1 entries read at once */


/* ---- the check state ------------------------------------------------ */

struct rb_slot {
  uint64_t off;                  /* 0 = empty */
  uint64_t last_use;
  unsigned char *data;
};

struct ck {
  struct qcow2_state *s;
  const char *name;
  struct qc_check_result *res;
  unsigned cb;
  uint64_t cs;
  uint64_t file_size;
  uint64_t nb;                   /* host clusters compared */
  uint64_t cap;                  /* entries in exp */
  uint64_t refcount_max;
  unsigned rb_bits;              /* log2 of refcounts per block */
  /* Expected refcounts, saturating; counts above 65535 (refcount widths
   * of 32 and 64 bits only) are kept exactly in big. */
  uint16_t *exp;
  struct u64map big;
  /* Distinct L2 table offsets -> references: all in the low 40 bits,
   * from the active L1 table in the high 24. */
  struct u64map l2refs;
  uint64_t *reftable;
  uint64_t rt_entries;
  struct rb_slot rbc[RB_CACHE_SLOTS];
  uint64_t clock;
  unsigned char *buf;            /* one cluster: an L2 table, a chunk */
  bool fix_leaks, fix_errors, fix_copied;
  /* Refcounts of 0 for clusters in use, or broken refcount structures:
   * qemu rebuilds them, and will not repair leaks alone. */
  bool rebuild;
  qc_check_report_cb report;
  void *report_opaque;
};

#define L2REF_ACTIVE_SHIFT 40

static void
note (struct ck *c, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Findings go to the caller's reporter line by line, worded as qemu-img
 * check words them; a library never prints on its own. */
static void
note (struct ck *c, const char *fmt, ...)
{
  char line[512];
  va_list ap;

  if (c->report == NULL)
    return;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  c->report (c->report_opaque, line);
}

static uint64_t
exp_get (struct ck *c, uint64_t i)
{
  uint64_t *v;

  if (c->exp[i] < UINT16_MAX)
    return c->exp[i];
  u64map_slot (&c->big, i + 1, false, &v);
  return v ? *v : UINT16_MAX;
}

static int
exp_set (struct ck *c, uint64_t i, uint64_t value)
{
  uint64_t *v;
  int r;

  c->exp[i] = (uint16_t) MIN (value, (uint64_t) UINT16_MAX);
  if (value <= UINT16_MAX)
    return 0;
  r = u64map_slot (&c->big, i + 1, true, &v);
  if (r < 0)
    return r;
  *v = value;
  return 0;
}

/*
 * Count k references to the host clusters [off, off+size). Like qemu, a
 * region may run less than a cluster past the end of the file (the last
 * cluster can be partly written); one running further is a corruption and
 * is not counted.
 */
static int
inc_refs (struct ck *c, uint64_t off, uint64_t size, uint64_t k)
{
  uint64_t end, i, last;
  int r;

  if (size == 0 || k == 0)
    return 0;
  if (ADD_OVERFLOW (off, size, &end)
      || (end > c->file_size && end - c->file_size >= c->cs))
    {
      note (c, "ERROR: counting reference for region exceeding the end of the "
            "file by one cluster or more: offset 0x%" PRIx64 " size 0x%"
            PRIx64, off, size);
      c->res->corruptions += k;
      return 0;
    }
  last = (end - 1) >> c->cb;       /* < cap, see check_init */
  for (i = off >> c->cb; i <= last; i++)
    {
      uint64_t v = exp_get (c, i), room = c->refcount_max - v;

      if (k > room)
        {
          note (c, "ERROR: overflow cluster offset=0x%" PRIx64, i << c->cb);
          c->res->corruptions += k - room;
          v = c->refcount_max;
        }
      else
        v += k;
      r = exp_set (c, i, v);
      if (r < 0)
        {
          c->res->check_errors++;
          return r;
        }
    }
  c->nb = MAX (c->nb, last + 1);
  return 0;
}

/* ---- on-disk refcounts ---------------------------------------------- */


static int
load_reftable (struct ck *c)
{
  const struct qcow2_header *h = &c->s->h;
  uint64_t n = ((uint64_t) h->refcount_table_clusters << c->cb) / 8, i;
  int r;

  /* Checked at open: at most 8 MiB, inside the file. */
  free (c->reftable);
  c->reftable = malloc (n * sizeof *c->reftable);
  if (c->reftable == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (c->s->io, c->reftable, n * sizeof *c->reftable,
                h->refcount_table_offset);
  if (r < 0)
    return r;
  for (i = 0; i < n; i++)
    c->reftable[i] = get_be64 (&c->reftable[i]);
  c->rt_entries = n;
  for (i = 0; i < RB_CACHE_SLOTS; i++)
    c->rbc[i].off = 0;
  return 0;
}

/* The refcount block holding block index bi: *blk NULL when it has none
 * (every refcount 0). 1 when the table entry is misaligned (qemu cannot
 * read such a block either), -errno on I/O errors. A block past the end
 * of the file reads as zeroes, as in qemu. */
static int
ondisk_block (struct ck *c, uint64_t bi, const unsigned char **blk)
{
  uint64_t off = bi < c->rt_entries ? c->reftable[bi] & ~REFT_RESERVED : 0;
  struct rb_slot *victim = &c->rbc[0];
  unsigned i;
  int r;

  *blk = NULL;
  if (off == 0)
    return 0;
  if (!IS_ALIGNED (off, c->cs))
    return 1;
  for (i = 0; i < RB_CACHE_SLOTS; i++)
    {
      if (c->rbc[i].off == off)
        {
          c->rbc[i].last_use = ++c->clock;
          *blk = c->rbc[i].data;
          return 0;
        }
      if (c->rbc[i].last_use < victim->last_use)
        victim = &c->rbc[i];
    }
  if (victim->data == NULL)
    {
      victim->data = malloc (c->cs);
      if (victim->data == NULL)
        return set_error (ENOMEM, "out of memory");
    }
  victim->off = 0;
  r = io_pread (c->s->io, victim->data, c->cs, off);
  if (r < 0)
    return r;
  victim->off = off;
  victim->last_use = ++c->clock;
  *blk = victim->data;
  return 0;
}

/* The on-disk refcount of host cluster i; nonzero when it cannot be read. */
static int
ondisk_refcount (struct ck *c, uint64_t i, uint64_t *rc)
{
  const unsigned char *b;
  int r;

  *rc = 0;
  r = ondisk_block (c, i >> c->rb_bits, &b);
  if (r == 0 && b)
    *rc = qcow2_rb_get (b, c->s->h.refcount_order,
                    i & ((1ull << c->rb_bits) - 1));
  return r;
}

/* ---- L2 tables ------------------------------------------------------ */

/* Whether the COPIED flag of an active entry agrees with the refcount of
 * the cluster it points to; *fixed gets the corrected entry. */
static bool
copied_ok (struct ck *c, uint64_t entry, uint64_t host, uint64_t *fixed)
{
  uint64_t rc;

  if (ondisk_refcount (c, host >> c->cb, &rc) != 0)
    return true;                 /* counted where the block is compared */
  *fixed = rc == 1 ? entry | QCOW2_OFLAG_COPIED : entry & ~QCOW2_OFLAG_COPIED;
  return *fixed == entry;
}

/* Per-table state while walking one L2 table k times (a of them from the
 * active L1 table). */
struct l2walk {
  uint64_t off, k, a;
  uint64_t next_contiguous;
  bool dirty;
};

static int
l2_compressed (struct ck *c, struct l2walk *w, uint64_t entry,
               uint64_t bitmap)
{
  uint64_t coff, nb, size;
  int r;

  if (entry & QCOW2_OFLAG_COPIED)
    {
      note (c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set "
            "for compressed clusters", (uint64_t) (entry & ((1ull << 62) - 1)));
      c->res->corruptions += w->k;
    }
  if (bitmap)
    {
      note (c, "ERROR compressed cluster with non-zero subcluster allocation "
            "bitmap, entry=0x%" PRIx64, entry);
      c->res->corruptions += w->k;
      return 0;
    }
  qcow2_compressed_split (c->cb, entry, &coff, &nb);
  size = (nb + 1) * QCOW2_COMPRESSED_SECTOR
    - (coff & (QCOW2_COMPRESSED_SECTOR - 1));
  r = inc_refs (c, coff, size, w->k);
  c->res->allocated_clusters += w->a;
  c->res->compressed_clusters += w->a;
  /* Compressed clusters count as fragmented, as qemu counts them. */
  c->res->fragmented_clusters += w->a;
  return r;
}

/* A standard cluster with a host offset (data, or preallocated zero). */
static int
l2_allocated (struct ck *c, struct l2walk *w, unsigned char *p,
              uint64_t entry, uint64_t bitmap)
{
  uint64_t host = entry & QCOW2_OFFSET_MASK, fixed;

  if ((bitmap >> 32) & bitmap)
    {
      note (c, "ERROR offset=%" PRIx64 ": Allocated cluster has corrupted "
            "subcluster allocation bitmap", host);
      c->res->corruptions += w->k;
    }
  if (!IS_ALIGNED (host, c->cs))
    {
      note (c, "ERROR offset=%" PRIx64 ": Cluster is not properly aligned; "
            "L2 entry corrupted.", host);
      c->res->corruptions += w->k;
    }
  if (w->a)
    {
      c->res->allocated_clusters += w->a;
      if (w->next_contiguous && host != w->next_contiguous)
        c->res->fragmented_clusters += w->a;
      w->next_contiguous = host + c->cs;
      if (!copied_ok (c, entry, host, &fixed))
        {
          if (c->fix_copied)
            {
              note (c, "Repairing OFLAG_COPIED data cluster: l2_entry=%" PRIx64,
                    entry);
              put_be64 (p, fixed);
              w->dirty = true;
              c->res->corruptions_fixed++;
            }
          else
            {
              note (c, "ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64,
                    entry);
              c->res->corruptions += w->a;
            }
        }
    }
  return inc_refs (c, host, c->cs, w->k);
}

static int
l2_entry (struct ck *c, struct l2walk *w, unsigned char *p)
{
  bool ext = c->s->g.extended_l2;
  uint64_t entry = get_be64 (p), bitmap = ext ? get_be64 (p + 8) : 0;

  if (entry & QCOW2_OFLAG_COMPRESSED)
    return l2_compressed (c, w, entry, bitmap);
  if (entry & L2E_STD_RESERVED)
    {
      note (c, "ERROR found l2 entry with reserved bits set: %" PRIx64, entry);
      c->res->corruptions += w->k;
    }
  if (entry & QCOW2_OFFSET_MASK)
    return l2_allocated (c, w, p, entry, bitmap);
  if (bitmap & L2_BITMAP_ALLOC)
    {
      note (c, "ERROR: Unallocated cluster has non-zero subcluster "
            "allocation map");
      c->res->corruptions += w->k;
    }
  return 0;
}

static int
walk_l2 (struct ck *c, uint64_t off, uint64_t refs)
{
  struct l2walk w = {
    .off = off,
    .k = refs & ((1ull << L2REF_ACTIVE_SHIFT) - 1),
    .a = refs >> L2REF_ACTIVE_SHIFT,
  };
  unsigned esz = c->s->l2_entry_size;
  uint64_t i;
  int r;

  r = io_pread (c->s->io, c->buf, c->cs, off);
  if (r < 0)
    {
      note (c, "ERROR: I/O error in check_refcounts_l2");
      c->res->check_errors++;
      return r;
    }
  for (i = 0; i < c->cs; i += esz)
    {
      r = l2_entry (c, &w, c->buf + i);
      if (r < 0)
        return r;
    }
  if (!w.dirty)
    return 0;
  r = io_pwrite (c->s->io, c->buf, c->cs, off);
  qcow2_l2_cache_drop (&c->s->l2, off);
  if (r < 0)
    c->res->check_errors++;
  return r;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

  return x < y ? -1 : x > y;
}

/* Each distinct L2 table once, in file order, with its reference count. */
static int
walk_l2_tables (struct ck *c)
{
  uint64_t *offs, *v;
  size_t i, n = 0;
  int r = 0;

  if (c->l2refs.n == 0)
    return 0;
  offs = malloc (c->l2refs.n * sizeof *offs);
  if (offs == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < c->l2refs.cap; i++)
    if (c->l2refs.keys[i])
      offs[n++] = c->l2refs.keys[i];
  qsort (offs, n, sizeof *offs, cmp_u64);
  for (i = 0; i < n && r == 0; i++)
    {
      u64map_slot (&c->l2refs, offs[i], false, &v);
      r = walk_l2 (c, offs[i], *v);
    }
  free (offs);
  return r;
}

/* ---- L1 tables ------------------------------------------------------ */

static int
l1_copied (struct ck *c, uint64_t index, uint64_t entry, uint64_t l2)
{
  uint64_t fixed;
  unsigned char be[8];
  int r;

  if (copied_ok (c, entry, l2, &fixed))
    return 0;
  if (!c->fix_copied)
    {
      note (c, "ERROR OFLAG_COPIED L2 cluster: l1_index=%" PRIu64
            " l1_entry=%" PRIx64, index, entry);
      c->res->corruptions++;
      return 0;
    }
  note (c, "Repairing OFLAG_COPIED L2 cluster: l1_index=%" PRIu64
        " l1_entry=%" PRIx64, index, entry);
  put_be64 (be, fixed);
  r = io_pwrite (c->s->io, be, sizeof be,
                 c->s->h.l1_table_offset + 8 * index);
  if (r < 0)
    {
      c->res->check_errors++;
      return r;
    }
  c->s->l1[index] = fixed;
  c->res->corruptions_fixed++;
  return 0;
}

static int
l1_entry (struct ck *c, uint64_t index, uint64_t entry, bool active)
{
  uint64_t l2 = entry & QCOW2_OFFSET_MASK, *v;
  int r;

  if (entry & L1E_RESERVED)
    {
      note (c, "ERROR found L1 entry with reserved bits set: %" PRIx64, entry);
      c->res->corruptions++;
    }
  if (l2 == 0)
    return 0;
  r = inc_refs (c, l2, c->cs, 1);
  if (r < 0)
    return r;
  if (!IS_ALIGNED (l2, c->cs))
    {
      note (c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 "
            "entry corrupted", l2);
      c->res->corruptions++;
    }
  if (active)
    {
      r = l1_copied (c, index, entry, l2);
      if (r < 0)
        return r;
    }
  /* A table past the end of the file reads as zeroes: nothing in it. */
  if (l2 >= c->file_size)
    return 0;
  r = u64map_slot (&c->l2refs, l2, true, &v);
  if (r < 0)
    return r;
  *v += 1 + (active ? 1ull << L2REF_ACTIVE_SHIFT : 0);
  return 0;
}

/* An L1 table: its own clusters, and each L2 table it names (walked later,
 * once per distinct table). The active one is in memory already. */
static int
walk_l1 (struct ck *c, uint64_t off, uint64_t size, bool active)
{
  uint64_t *chunk = (uint64_t *) c->buf, i, j, n;
  int r;

  r = inc_refs (c, off, size * 8, 1);
  for (i = 0; r == 0 && i < size; i += n)
    {
      n = MIN (size - i, active ? size : c->cs / 8);
      if (!active)
        r = io_pread (c->s->io, chunk, n * 8, off + i * 8);
      if (r < 0)
        {
          note (c, "ERROR: I/O error in check_refcounts_l1");
          c->res->check_errors++;
          return r;
        }
      for (j = 0; r == 0 && j < n; j++)
        r = l1_entry (c, i + j,
                      active ? c->s->l1[i + j] : get_be64 (&chunk[j]),
                      active);
    }
  return r;
}

/* ---- snapshots, bitmaps, refcount structures ------------------------ */

/* The snapshot table's length as qemu computes it: up to the end of the
 * last entry's name. The entries were validated at open. */
static int
snapshot_table_size (struct ck *c, uint64_t *size)
{
  uint64_t off = c->s->h.snapshots_offset;
  unsigned char f[QCOW2_SNAPSHOT_FIXED_LEN];
  uint32_t i;
  int r;

  for (i = 0; i < c->s->h.nb_snapshots; i++)
    {
      off = ROUND_UP (off, 8);
      r = io_pread (c->s->io, f, sizeof f, off);
      if (r < 0)
        return r;
      off += sizeof f + get_be32 (f + 36) + get_be16 (f + 12)
        + get_be16 (f + 14);
    }
  *size = off - c->s->h.snapshots_offset;
  return 0;
}

static int
walk_snapshots (struct ck *c)
{
  uint64_t size;
  uint32_t i;
  int r;

  for (i = 0; i < c->s->h.nb_snapshots; i++)
    {
      const struct qcow2_snapshot *sn = &c->s->snapshots[i];

      if (!IS_ALIGNED (sn->l1_table_offset, c->cs))
        {
          note (c, "ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is "
                "not cluster aligned; snapshot table entry corrupted",
                sn->id, sn->name, sn->l1_table_offset);
          c->res->corruptions++;
          continue;
        }
      if ((uint64_t) sn->l1_size * 8 > QCOW2_MAX_L1_BYTES)
        {
          note (c, "ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is "
                "too large; snapshot table entry corrupted",
                sn->id, sn->name, sn->l1_size);
          c->res->corruptions++;
          continue;
        }
      r = walk_l1 (c, sn->l1_table_offset, sn->l1_size, false);
      if (r < 0)
        return r;
    }
  if (c->s->h.nb_snapshots == 0)
    return 0;
  r = snapshot_table_size (c, &size);
  if (r < 0)
    {
      c->res->check_errors++;
      return r;
    }
  return inc_refs (c, c->s->h.snapshots_offset, size, 1);
}

/* A bitmap table, read a cluster at a time (its size comes from the
 * image). Returns 1 when an entry is invalid: qemu then stops counting
 * bitmaps. */
static int
walk_bitmap_table (struct ck *c, const struct qcow2_bitmap *b)
{
  uint64_t bytes = (uint64_t) b->table_size * 8, pos, i, n;
  int r;

  for (pos = 0; pos < bytes; pos += n)
    {
      n = MIN (bytes - pos, c->cs);
      r = io_pread (c->s->io, c->buf, n, b->table_offset + pos);
      if (r < 0)
        {
          c->res->check_errors++;
          return r;
        }
      for (i = 0; i < n; i += 8)
        {
          uint64_t e = get_be64 (c->buf + i), off = e & BME_OFFSET_MASK;

          if ((e & BME_RESERVED)
              || (off && ((e & 1) || !IS_ALIGNED (off, c->cs))))
            {
              note (c, "ERROR bitmap '%s': invalid bitmap table entry 0x%"
                    PRIx64, b->name, e);
              c->res->corruptions++;
              return 1;
            }
          r = inc_refs (c, off, off ? c->cs : 0, 1);
          if (r < 0)
            return r;
        }
    }
  return 0;
}

static int
walk_bitmaps (struct ck *c)
{
  struct qcow2_state *s = c->s;
  struct qc_bitmap_info info;
  uint32_t i;
  int r;

  if (s->nb_bitmaps == 0)
    return 0;
  r = inc_refs (c, s->bitmap_dir_offset, s->bitmap_dir_size, 1);
  if (r < 0)
    return r;
  r = qcow2_bitmap_op (s, 0, &info);     /* loads the directory */
  if (r < 0)
    {
      c->res->corruptions++;
      return r;
    }
  for (i = 0; i < s->nb_bitmaps; i++)
    {
      const struct qcow2_bitmap *b = &s->bitmaps[i];

      r = inc_refs (c, b->table_offset, (uint64_t) b->table_size * 8, 1);
      if (r < 0)
        return r;
      if (!IS_ALIGNED (b->table_offset, c->cs) || b->table_offset == 0
          || !range_within (b->table_offset, (uint64_t) b->table_size * 8,
                            c->file_size))
        {
          c->res->corruptions++;
          return set_image_error (c->name, EINVAL, "bitmap '%s': bitmap "
                                  "table at 0x%" PRIx64 " is misaligned or "
                                  "past end of file", b->name,
                                  b->table_offset);
        }
      r = walk_bitmap_table (c, b);
      if (r != 0)
        return r < 0 ? r : 0;
    }
  return 0;
}

/* Each refcount block is referenced once, by the table, and by nothing
 * else. */
static int
check_refblocks (struct ck *c)
{
  uint64_t i;
  int r;

  for (i = 0; i < c->rt_entries; i++)
    {
      uint64_t off = c->reftable[i] & ~REFT_RESERVED, rc;

      if (c->reftable[i] & REFT_RESERVED)
        {
          note (c, "ERROR refcount table entry %" PRIu64 " has reserved bits "
                "set", i);
          c->res->corruptions++;
          c->rebuild = true;
          continue;
        }
      if (!IS_ALIGNED (off, c->cs))
        {
          note (c, "ERROR refcount block %" PRIu64 " is not cluster aligned; "
                "refcount table entry corrupted", i);
          c->res->corruptions++;
          c->rebuild = true;
          continue;
        }
      if ((off >> c->cb) >= c->nb)
        {
          note (c, "ERROR refcount block %" PRIu64 " is outside image", i);
          c->res->corruptions++;
          continue;
        }
      if (off == 0)
        continue;
      r = inc_refs (c, off, c->cs, 1);
      if (r < 0)
        return r;
      rc = exp_get (c, off >> c->cb);
      if (rc != 1)
        {
          note (c, "ERROR refcount block %" PRIu64 " refcount=%" PRIu64, i, rc);
          c->res->corruptions++;
          c->rebuild = true;
        }
    }
  return 0;
}

/* ---- comparing ------------------------------------------------------ */

static void
mismatch (struct ck *c, uint64_t i, uint64_t ondisk, uint64_t expected)
{
  bool leak = ondisk > expected;
  bool fix = leak ? c->fix_leaks : c->fix_errors;

  if (ondisk == 0)
    c->rebuild = true;
  if (fix)
    {
      note (c, "Repairing cluster %" PRIu64 " refcount=%" PRIu64
            " reference=%" PRIu64, i, ondisk, expected);
      if (qcow2_refcount_set (c->s, i, expected) == 0)
        {
          if (leak)
            c->res->leaks_fixed++;
          else
            c->res->corruptions_fixed++;
          return;
        }
      clear_error ();
    }
  else
    note (c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
          leak ? "Leaked" : "ERROR", i, ondisk, expected);
  if (leak)
    c->res->leaks++;
  else
    c->res->corruptions++;
}

/* Refcounts of clusters past the end of the file, which nothing may
 * reference: a writer killed after its refcount blocks were written but
 * before the data of its last clusters leaves leaks that qemu-img check
 * does not see (it looks inside the file only), and that become leaks it
 * sees once the file grows over them. Looked at up to as many clusters
 * again as the file holds (at least one block's worth), which bounds the
 * time a hostile refcount table can cost; zero blocks are skipped whole. */
static void
compare_past_end (struct ck *c)
{
  uint64_t per_block = 1ull << c->rb_bits, bi, i, end, limit;
  unsigned order = c->s->h.refcount_order;
  size_t bytes;

  if (ADD_OVERFLOW (c->nb, MAX (c->nb, per_block), &limit))
    limit = UINT64_MAX;
  for (bi = c->nb >> c->rb_bits; bi < c->rt_entries
         && bi << c->rb_bits < limit; bi++)
    {
      const unsigned char *b;

      if (ondisk_block (c, bi, &b) != 0 || b == NULL)
        continue;                /* reported inside the file, or none */
      i = MAX (bi << c->rb_bits, c->nb);
      end = MIN (limit, (bi + 1) << c->rb_bits);
      bytes = (size_t) DIV_ROUND_UP ((end - (bi << c->rb_bits)) << order, 8);
      if ((bi << c->rb_bits) >= c->nb && is_zero (b, bytes))
        continue;
      for (; i < end; i++)
        {
          uint64_t ondisk = qcow2_rb_get (b, order, i & (per_block - 1));

          if (ondisk)
            mismatch (c, i, ondisk, i < c->cap ? exp_get (c, i) : 0);
        }
    }
}

/* Every host cluster of the file against its refcount block, each block
 * read once. Returns the highest cluster in use. */
static uint64_t
compare (struct ck *c)
{
  uint64_t per_block = 1ull << c->rb_bits, bi, i, end, highest = 0;
  unsigned order = c->s->h.refcount_order;

  for (bi = 0; bi << c->rb_bits < c->nb; bi++)
    {
      const unsigned char *b;
      int r = ondisk_block (c, bi, &b);

      end = MIN (c->nb, (bi << c->rb_bits) + per_block);
      if (r != 0)
        {
          note (c, "Can't get refcount for clusters %" PRIu64 " to %" PRIu64
                ": %s", bi << c->rb_bits, end - 1,
                r > 0 ? "misaligned refcount block" : "I/O error");
          c->res->check_errors += end - (bi << c->rb_bits);
          continue;
        }
      for (i = bi << c->rb_bits; i < end; i++)
        {
          uint64_t ondisk = b ? qcow2_rb_get (b, order, i & (per_block - 1)) : 0;
          uint64_t expected = exp_get (c, i);

          if (ondisk || expected)
            highest = i;
          if (ondisk != expected)
            mismatch (c, i, ondisk, expected);
        }
    }
  compare_past_end (c);
  return highest;
}

/* ---- one pass ------------------------------------------------------- */

/* The expected-refcount array for the file as it is now (a repair may
 * have grown it). */
static int
size_expected (struct ck *c)
{
  uint64_t clusters = DIV_ROUND_UP (c->file_size, c->cs);
  uint16_t *p;

  if (clusters > MAX_HOST_CLUSTERS)
    return set_image_error (c->name, EFBIG, "file holds %" PRIu64 " host "
                            "clusters, more than the %llu this check can "
                            "count", clusters, MAX_HOST_CLUSTERS);
  /* A reference may run into one cluster past the last (inc_refs). */
  if (clusters + 1 <= c->cap)
    return 0;
  p = realloc (c->exp, (clusters + 1) * sizeof *p);
  if (p == NULL)
    return set_image_error (c->name, ENOMEM, "out of memory for the "
                            "refcounts of %" PRIu64 " host clusters",
                            clusters);
  c->exp = p;
  c->cap = clusters + 1;
  return 0;
}

static int
check_init (struct ck *c, struct qcow2_state *s)
{
  int r;

  memset (c, 0, sizeof *c);
  c->s = s;
  c->name = s->name;
  c->cb = s->h.cluster_bits;
  c->cs = s->cluster_size;
  c->rb_bits = c->cb + 3 - s->h.refcount_order;
  c->refcount_max = s->h.refcount_order == 6 ? UINT64_MAX
    : (1ull << (1u << s->h.refcount_order)) - 1;
  c->buf = malloc (c->cs);
  if (c->buf == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_get_size (s->io, &c->file_size);
  if (r < 0)
    return r;
  return size_expected (c);
}

static void
check_free (struct ck *c)
{
  unsigned i;

  free (c->exp);
  free (c->buf);
  free (c->reftable);
  for (i = 0; i < RB_CACHE_SLOTS; i++)
    free (c->rbc[i].data);
  u64map_free (&c->big);
  u64map_free (&c->l2refs);
}

/* Everything the image references, in qemu's order of accounting. */
static int
count_references (struct ck *c)
{
  struct qcow2_state *s = c->s;
  int r;

  r = inc_refs (c, 0, c->cs, 1);                       /* header */
  if (r == 0)
    r = walk_l1 (c, s->h.l1_table_offset, s->h.l1_size, true);
  if (r == 0)
    r = walk_snapshots (c);
  if (r == 0)
    r = walk_l2_tables (c);
  if (r == 0)
    r = inc_refs (c, s->h.refcount_table_offset,
                  (uint64_t) s->h.refcount_table_clusters << c->cb, 1);
  if (r == 0 && s->has_crypto_ext)
    r = inc_refs (c, s->crypto_hdr_offset, s->crypto_hdr_len, 1);
  if (r == 0)
    r = walk_bitmaps (c);
  if (r == 0)
    r = check_refblocks (c);
  return r;
}

static int
run_pass (struct ck *c, struct qc_check_result *res)
{
  struct qcow2_state *s = c->s;
  uint64_t highest;
  int r;

  memset ((char *) res + sizeof res->struct_size, 0,
          sizeof *res - sizeof res->struct_size);
  c->res = res;
  c->rebuild = false;
  /* A repair may have grown the file and moved refcount structures. */
  r = io_get_size (s->io, &c->file_size);
  if (r < 0)
    return r;
  r = size_expected (c);
  if (r < 0)
    return r;
  c->nb = DIV_ROUND_UP (c->file_size, c->cs);
  memset (c->exp, 0, c->cap * sizeof *c->exp);
  u64map_clear (&c->big);
  u64map_clear (&c->l2refs);
  res->total_clusters = DIV_ROUND_UP (ROUND_UP (s->h.size, 512), c->cs);
  r = load_reftable (c);
  if (r == 0)
    r = count_references (c);
  if (r < 0)
    return r;
  highest = compare (c);
  res->image_end_offset = (highest + 1) << c->cb;
  return 0;
}

/* ---- the op ---------------------------------------------------------- */

/* The write side's caches, then what this file wrote itself. */
static int
flush_writes (struct qcow2_state *s)
{
  int r = qcow2_format.flush ? qcow2_format.flush (s) : 0;

  return r < 0 ? r : s->io->ops->flush (s->io);
}

/* After a repair leaves no corruption, the image is clean: clear the
 * dirty and corrupt bits, as qemu does. */
static int
mark_clean (struct qcow2_state *s)
{
  uint64_t bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
  unsigned char be[8];
  int r;

  if (s->h.version < 3 || !(s->h.incompatible_features & bits))
    return 0;
  put_be64 (be, s->h.incompatible_features & ~bits);
  r = io_pwrite (s->io, be, sizeof be,
                 offsetof (struct qcow2_header_be, incompatible_features));
  if (r == 0)
    r = s->io->ops->flush (s->io);
  if (r == 0)
    s->h.incompatible_features &= ~bits;
  return r;
}

/* Fix refcounts, then COPIED flags (which depend on the refcounts), then
 * check again and report what is left, as qemu-img check -r does. */
static int
repair (struct ck *c, unsigned flags, struct qc_check_result *res)
{
  struct qc_check_result pass = *res;
  uint64_t leaks_fixed, corruptions_fixed;
  int r;

  /* First look, changing nothing: qemu refuses to repair leaks alone
   * where refcounts must be rebuilt, and there may be nothing to do. */
  r = run_pass (c, res);
  if (r < 0 || (res->leaks == 0 && res->corruptions == 0))
    return r;
  if (c->rebuild && !(flags & QC_CHECK_REPAIR_ALL))
    {
      res->check_errors++;
      return set_image_error (c->name, EIO, "refcounts are too low or "
                              "their structures are broken: they must be "
                              "rebuilt (--repair all); nothing was "
                              "repaired");
    }
  c->fix_leaks = true;
  c->fix_errors = flags & QC_CHECK_REPAIR_ALL;
  if (c->fix_errors)
    qcow2_alloc_append_only (c->s);
  r = run_pass (c, &pass);
  leaks_fixed = pass.leaks_fixed;
  corruptions_fixed = pass.corruptions_fixed;
  if (r == 0)
    r = flush_writes (c->s);
  c->fix_leaks = c->fix_errors = false;
  /* qemu-img check -r leaks sets COPIED flags right too. */
  if (r == 0)
    {
      c->fix_copied = true;
      r = run_pass (c, &pass);
      corruptions_fixed += pass.corruptions_fixed;
      c->fix_copied = false;
      if (r == 0)
        r = flush_writes (c->s);
    }
  if (r < 0)
    return r;
  if (leaks_fixed || corruptions_fixed)
    r = run_pass (c, &pass);
  *res = pass;
  res->leaks_fixed = leaks_fixed;
  res->corruptions_fixed = corruptions_fixed;
  if (r == 0 && res->corruptions == 0 && res->check_errors == 0)
    r = mark_clean (c->s);
  return r;
}

int
qcow2_check_op (void *st, unsigned flags, struct qc_check_result *res,
                qc_check_report_cb report, void *opaque)
{
  struct qcow2_state *s = st;
  struct ck c;
  int r;

  if ((flags & (QC_CHECK_REPAIR_LEAKS | QC_CHECK_REPAIR_ALL))
      && !(s->flags & FMT_OPEN_WRITE))
    return set_image_error (s->name, EBADF, "repair needs the image opened "
                            "for writing");
  if (s->unreadable)
    return set_image_error (s->name, ENOTSUP, "%s", s->unreadable);
  r = check_init (&c, s);
  c.report = report;
  c.report_opaque = opaque;
  if (r == 0)
    {
      if (flags & (QC_CHECK_REPAIR_LEAKS | QC_CHECK_REPAIR_ALL))
        r = repair (&c, flags, res);
      else
        r = run_pass (&c, res);
    }
  check_free (&c);
  return r;
}
