/* A uint64 -> uint64 hash map (open addressing; key 0 means empty), for check. */
#ifndef QC_U64MAP_H
#define QC_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map {
  uint64_t *keys;
  uint64_t *vals;
  size_t cap;                    /* power of two, or 0 */
  size_t n;
};

/* The value slot of key (> 0), or *val NULL if absent; created as 0 when
 * create is set. Returns 0 or -ENOMEM. */
int u64map_slot (struct u64map *m, uint64_t key, bool create, uint64_t **val);
void u64map_clear (struct u64map *m);
void u64map_free (struct u64map *m);

#endif
