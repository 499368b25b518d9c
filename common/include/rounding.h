/* Rounding and alignment helpers for power-of-two sizes. */
#ifndef QC_ROUNDING_H
#define QC_ROUNDING_H

#include <stdbool.h>
#include <stdint.h>

#define ROUND_DOWN(v, a) ((v) & ~((__typeof__ (v)) (a) - 1))
#define ROUND_UP(v, a) ROUND_DOWN ((v) + (a) - 1, (a))
#define IS_ALIGNED(v, a) (((v) & ((__typeof__ (v)) (a) - 1)) == 0)
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#endif
