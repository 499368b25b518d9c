/* A uint64 -> uint64 hash map with open addressing, used by the consistency check. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "u64map.h"

static size_t
u64map_hash (uint64_t key, size_t cap)
{
  return (size_t) ((key * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static int
u64map_grow (struct u64map *m)
{
  size_t cap = m->cap ? m->cap * 2 : 64, i, j;
  uint64_t *k = calloc (cap, sizeof *k), *v = calloc (cap, sizeof *v);

  if (k == NULL || v == NULL)
    {
      free (k);
      free (v);
      return set_error (ENOMEM, "out of memory");
    }
  for (i = 0; i < m->cap; i++)
    if (m->keys[i])
      {
        for (j = u64map_hash (m->keys[i], cap); k[j]; j = (j + 1) & (cap - 1))
          ;
        k[j] = m->keys[i];
        v[j] = m->vals[i];
      }
  free (m->keys);
  free (m->vals);
  m->keys = k;
  m->vals = v;
  m->cap = cap;
  return 0;
}

/* The value slot of key (> 0); created as 0 when create is set. */
int
u64map_slot (struct u64map *m, uint64_t key, bool create, uint64_t **val)
{
  size_t j;
  int r;

  *val = NULL;
  if (create && (m->n + 1) * 2 > m->cap)
    {
      r = u64map_grow (m);
      if (r < 0)
        return r;
    }
  if (m->cap == 0)
    return 0;
  for (j = u64map_hash (key, m->cap); m->keys[j]; j = (j + 1) & (m->cap - 1))
    if (m->keys[j] == key)
      {
        *val = &m->vals[j];
        return 0;
      }
  if (create)
    {
      m->keys[j] = key;
      m->vals[j] = 0;
      m->n++;
      *val = &m->vals[j];
    }
  return 0;
}

void
u64map_clear (struct u64map *m)
{
  if (m->cap)
    {
      memset (m->keys, 0, m->cap * sizeof *m->keys);
      memset (m->vals, 0, m->cap * sizeof *m->vals);
    }
  m->n = 0;
}

void
u64map_free (struct u64map *m)
{
  free (m->keys);
  free (m->vals);
  memset (m, 0, sizeof *m);
}
