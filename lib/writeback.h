/* When a job starts write-back of what it has written so far. */
#ifndef QCHAIN_WRITEBACK_H
#define QCHAIN_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

/* The final flush would otherwise write everything back at once, after
 * the copying. Small steps while a job is small, so a short job's flush
 * finds little left (64-layer rebase: 70 -> 55 ms); big steps after, which
 * measured fastest for large copies (a 2 GiB deep copy: 32 MiB steps about
 * 1.0 s, 8 MiB and 128 MiB steps 1.5-2.5 s). */
#define WB_SMALL_STEP (2u << 20)
#define WB_BIG_STEP (32u << 20)

/* unkicked: bytes written since write-back was last started; started:
 * bytes it was started on before. */
static inline bool
writeback_due (uint64_t unkicked, uint64_t started)
{
  return unkicked >= (started < WB_BIG_STEP ? WB_SMALL_STEP : WB_BIG_STEP);
}

#endif
