/* Overflow-checked arithmetic for sizes and offsets read from untrusted images. */
#ifndef QC_CHECKED_OVERFLOW_H
#define QC_CHECKED_OVERFLOW_H

#include <stdbool.h>
#include <stdint.h>

/* Each returns true when the result overflowed; *r is then unspecified. */
#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define SUB_OVERFLOW(a, b, r) __builtin_sub_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

/* True when [off, off+len) lies within [0, limit). len 0 is inside if off <= limit. */
static inline bool
range_within (uint64_t off, uint64_t len, uint64_t limit)
{
  uint64_t end;
  if (ADD_OVERFLOW (off, len, &end))
    return false;
  return end <= limit;
}

#endif
