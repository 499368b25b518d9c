/* Fast test for an all-zero buffer. */
#ifndef QC_ISZERO_H
#define QC_ISZERO_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Check the first 16 bytes by hand, then compare the buffer with itself shifted:
 * memcmp is vectorised and this needs no zero page. */
static inline bool
is_zero (const void *buf, size_t size)
{
  const unsigned char *p = buf;
  size_t i, n = size < 16 ? size : 16;

  for (i = 0; i < n; i++)
    if (p[i])
      return false;
  if (size <= 16)
    return true;
  return memcmp (p, p + 16, size - 16) == 0;
}

#endif
