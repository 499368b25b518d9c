/* A bounded least-recently-used cache of L2 tables, one per open image. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "errors.h"
#include "qcow2.h"

int
qcow2_l2_cache_init (struct qcow2_l2_cache *c, uint32_t table_size)
{
  unsigned n = QCOW2_L2_CACHE_BYTES / table_size;

  if (n > QCOW2_L2_CACHE_MAX_SLOTS)
    n = QCOW2_L2_CACHE_MAX_SLOTS;
  if (n < QCOW2_L2_CACHE_MIN_SLOTS)
    n = QCOW2_L2_CACHE_MIN_SLOTS;
  c->slots = calloc (n, sizeof *c->slots);
  if (c->slots == NULL)
    return set_error (ENOMEM, "out of memory");
  c->nb_slots = n;
  c->table_size = table_size;
  c->clock = 0;
  c->last_hit = 0;
  c->nb_reads = 0;
  return 0;
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
  c->nb_slots = 0;
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

int
qcow2_l2_cache_get (struct qcow2_l2_cache *c, struct io *io, uint64_t off,
                    const unsigned char **table)
{
  struct qcow2_l2_slot *slot;
  bool hit;
  unsigned i;
  int r;

  i = find_slot (c, off, &hit);
  slot = &c->slots[i];
  if (!hit)
    {
      if (slot->data == NULL)
        {
          slot->data = malloc (c->table_size);
          if (slot->data == NULL)
            return set_error (ENOMEM, "out of memory");
        }
      slot->off = 0;             /* stays empty if the read fails */
      r = io_pread (io, slot->data, c->table_size, off);
      if (r < 0)
        return r;
      slot->off = off;
      c->nb_reads++;
    }
  slot->last_use = ++c->clock;
  c->last_hit = i;
  *table = slot->data;
  return 0;
}

void
qcow2_l2_cache_drop (struct qcow2_l2_cache *c, uint64_t off)
{
  unsigned i;

  for (i = 0; i < c->nb_slots; i++)
    if (c->slots[i].off == off)
      c->slots[i].off = 0;
}
