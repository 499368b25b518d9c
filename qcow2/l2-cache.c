/* A bounded least-recently-used cache of metadata tables (L2 tables, refcount blocks) with dirty write-back. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "qcow2.h"

int
qcow2_l2_cache_init (struct qcow2_l2_cache *c, uint32_t table_size)
{
  unsigned n = QCOW2_L2_CACHE_BYTES / table_size;

  if (n > QCOW2_L2_CACHE_MAX_SLOTS)
    n = QCOW2_L2_CACHE_MAX_SLOTS;
  return qcow2_l2_cache_init_n (c, table_size, n);
}

int
qcow2_l2_cache_init_n (struct qcow2_l2_cache *c, uint32_t table_size,
                       unsigned n)
{
  if (n < QCOW2_L2_CACHE_MIN_SLOTS)
    n = QCOW2_L2_CACHE_MIN_SLOTS;
  memset (c, 0, sizeof *c);
  /* The slots grow as tables are read: a deep chain's backing layers are
   * limited to a few right after opening, and allocating (and zeroing)
   * all 1024 for each first took a 64-layer open 40% longer. */
  c->slots = calloc (QCOW2_L2_CACHE_MIN_SLOTS, sizeof *c->slots);
  if (c->slots == NULL)
    return set_error (ENOMEM, "out of memory");
  c->nb_slots = QCOW2_L2_CACHE_MIN_SLOTS;
  c->max_slots = n;
  c->table_size = table_size;
  c->clock = 0;
  c->last_hit = 0;
  c->nb_reads = 0;
  return 0;
}

void
qcow2_l2_cache_limit (struct qcow2_l2_cache *c, unsigned n)
{
  unsigned i;

  if (n < QCOW2_L2_CACHE_MIN_SLOTS)
    n = QCOW2_L2_CACHE_MIN_SLOTS;
  if (n >= c->max_slots || c->nb_dirty)
    return;                          /* dirty tables are written back first */
  c->max_slots = n;
  if (n >= c->nb_slots)
    return;
  for (i = n; i < c->nb_slots; i++) {
    free (c->slots[i].data);
    memset (&c->slots[i], 0, sizeof c->slots[i]);
  }
  c->nb_slots = n;
  c->last_hit = 0;
}

uint32_t
qcow2_cache_slice (const struct qcow2_state *s, unsigned *bits)
{
  uint32_t slice = s->cluster_size;

  if (!(s->flags & FMT_OPEN_WRITE))
    while (slice > QCOW2_L2_SLICE) {
      slice >>= 1;
      --*bits;
    }
  return slice;
}

void
qcow2_l2_cache_free (struct qcow2_l2_cache *c)
{
  unsigned i;

  if (c->slots == NULL)
    return;
  for (i = 0; i < c->nb_slots; i++)
    free (c->slots[i].data);
  free (c->slots);
  c->slots = NULL;
  c->nb_slots = c->max_slots = 0;
}

/* The slot holding off, or the one to evict (empty, else least recent). */
static unsigned
find_slot (struct qcow2_l2_cache *c, uint64_t off, bool *hit)
{
  unsigned i, victim = 0;

  *hit = false;
  if (c->slots[c->last_hit].off == off)
    {
      *hit = true;
      return c->last_hit;
    }
  for (i = 0; i < c->nb_slots; i++)
    {
      if (c->slots[i].off == off)
        {
          *hit = true;
          return i;
        }
      if (c->slots[i].off == 0)
        {
          if (c->slots[victim].off != 0)
            victim = i;
        }
      else if (c->slots[victim].off != 0
               && c->slots[i].last_use < c->slots[victim].last_use)
        victim = i;
    }
  return victim;
}

/* A victim that holds a table while the cache may still grow: an empty
 * slot from the grown array instead (the same victim if it cannot grow). */
static unsigned
grow (struct qcow2_l2_cache *c, unsigned victim)
{
  struct qcow2_l2_slot *p;
  unsigned n;

  if (c->slots[victim].off == 0 || c->nb_slots >= c->max_slots)
    return victim;
  n = c->nb_slots > c->max_slots / 2 ? c->max_slots : 2 * c->nb_slots;
  p = realloc (c->slots, n * sizeof *p);
  if (p == NULL)
    return victim;                   /* evicting works too */
  memset (p + c->nb_slots, 0, (n - c->nb_slots) * sizeof *p);
  c->slots = p;
  victim = c->nb_slots;
  c->nb_slots = n;
  return victim;
}

/* Make room in slot i for another table: a dirty victim is written back
 * first (through evict_dirty, which may write others too). */
static int
evict (struct qcow2_l2_cache *c, struct io *io, unsigned i)
{
  struct qcow2_l2_slot *slot = &c->slots[i];
  int r;

  if (slot->dirty)
    {
      r = c->evict_dirty ? c->evict_dirty (c->opaque)
        : qcow2_l2_cache_write_dirty (c, io);
      if (r < 0)
        return r;
    }
  if (slot->data == NULL)
    {
      slot->data = malloc (c->table_size);
      if (slot->data == NULL)
        return set_error (ENOMEM, "out of memory");
    }
  slot->off = 0;
  return 0;
}

/* The slot for off, read from the file on a miss unless fresh (then the
 * table starts as zeroes). */
static int
lookup (struct qcow2_l2_cache *c, struct io *io, uint64_t off, bool fresh,
        struct qcow2_l2_slot **out)
{
  struct qcow2_l2_slot *slot;
  bool hit;
  unsigned i;
  int r;

  i = find_slot (c, off, &hit);
  if (!hit)
    i = grow (c, i);
  slot = &c->slots[i];
  if (!hit)
    {
      r = evict (c, io, i);
      if (r < 0)
        return r;
      if (fresh)
        memset (slot->data, 0, c->table_size);
      else
        {
          /* The slot stays empty if the read fails. */
          r = io_pread (io, slot->data, c->table_size, off);
          if (r < 0)
            return r;
          c->nb_reads++;
        }
      slot->off = off;
    }
  else if (fresh)
    memset (slot->data, 0, c->table_size);
  slot->last_use = ++c->clock;
  c->last_hit = i;
  *out = slot;
  return 0;
}

int
qcow2_l2_cache_get (struct qcow2_l2_cache *c, struct io *io, uint64_t off,
                    const unsigned char **table)
{
  struct qcow2_l2_slot *slot;
  int r;

  r = lookup (c, io, off, false, &slot);
  if (r < 0)
    return r;
  *table = slot->data;
  return 0;
}

static void
mark_dirty (struct qcow2_l2_cache *c, struct qcow2_l2_slot *slot)
{
  if (!slot->dirty)
    {
      slot->dirty = true;
      c->nb_dirty++;
    }
}

int
qcow2_l2_cache_get_mut (struct qcow2_l2_cache *c, struct io *io,
                        uint64_t off, unsigned char **table)
{
  struct qcow2_l2_slot *slot;
  int r;

  r = lookup (c, io, off, false, &slot);
  if (r < 0)
    return r;
  mark_dirty (c, slot);
  *table = slot->data;
  return 0;
}

int
qcow2_l2_cache_get_new (struct qcow2_l2_cache *c, struct io *io,
                        uint64_t off, unsigned char **table)
{
  struct qcow2_l2_slot *slot;
  int r;

  r = lookup (c, io, off, true, &slot);
  if (r < 0)
    return r;
  mark_dirty (c, slot);
  *table = slot->data;
  return 0;
}

int
qcow2_l2_cache_write_dirty (struct qcow2_l2_cache *c, struct io *io)
{
  unsigned i;
  int r;

  for (i = 0; i < c->nb_slots && c->nb_dirty > 0; i++)
    {
      struct qcow2_l2_slot *slot = &c->slots[i];

      if (!slot->dirty)
        continue;
      r = io_pwrite (io, slot->data, c->table_size, slot->off);
      if (r < 0)
        return r;
      slot->dirty = false;
      c->nb_dirty--;
      c->nb_writes++;
    }
  return 0;
}

void
qcow2_l2_cache_drop (struct qcow2_l2_cache *c, uint64_t off)
{
  unsigned i;

  for (i = 0; i < c->nb_slots; i++)
    if (c->slots[i].off == off)
      {
        if (c->slots[i].dirty)
          c->nb_dirty--;
        c->slots[i].dirty = false;
        c->slots[i].off = 0;
      }
}
