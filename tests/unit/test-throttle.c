/* Unit tests for the job throttle, on a simulated clock (no timing asserts). */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "throttle.h"

#define SEC 1000000000ull
#define MiB (1024ull * 1024)

/* Drive requests of `req` bytes as fast as the throttle allows for `secs`
 * simulated seconds, changing the rate to rate2 half way if non-zero;
 * return the bytes admitted in each whole second. */
static void
simulate (uint64_t rate, uint64_t rate2, uint64_t req, unsigned secs,
          uint64_t *per_sec)
{
  struct throttle t;
  uint64_t now = 5 * SEC;              /* any origin */
  uint64_t start = now;
  unsigned i;

  for (i = 0; i < secs; i++)
    per_sec[i] = 0;
  throttle_init (&t, rate, now);
  while (now < start + secs * SEC) {
    uint64_t d;
    if (rate2 && now >= start + secs * SEC / 2 && t.rate != rate2)
      throttle_set_rate (&t, rate2, now);
    d = throttle_delay (&t, req, now);
    if (d) {
      now += d;
      continue;
    }
    per_sec[(now - start) / SEC] += req;
    now += 1000;                        /* the request itself takes 1 us */
  }
}

static void
each_second_within_5_percent (void **state)
{
  static const uint64_t rates[] = { 1 * MiB, 10 * MiB, 100 * MiB, 3 * MiB + 12345 };
  uint64_t per_sec[10];
  unsigned i, s;

  for (i = 0; i < sizeof rates / sizeof rates[0]; i++) {
    struct throttle t;
    uint64_t req;

    throttle_init (&t, rates[i], 0);
    req = throttle_max_request (&t, 4096, 4 * MiB);
    simulate (rates[i], 0, req, 10, per_sec);
    for (s = 0; s < 10; s++) {
      assert_true (per_sec[s] >= rates[i] * 95 / 100);
      assert_true (per_sec[s] <= rates[i] * 105 / 100);
    }
  }
}

static void
rate_change_mid_job (void **state)
{
  uint64_t per_sec[10];
  unsigned s;

  simulate (2 * MiB, 8 * MiB, 64 * 1024, 10, per_sec);
  for (s = 0; s < 5; s++)
    assert_true (per_sec[s] >= 2 * MiB * 95 / 100 && per_sec[s] <= 2 * MiB * 105 / 100);
  /* the second right after the change may straddle both rates */
  for (s = 6; s < 10; s++)
    assert_true (per_sec[s] >= 8 * MiB * 95 / 100 && per_sec[s] <= 8 * MiB * 105 / 100);
}

static void
unlimited_never_waits (void **state)
{
  struct throttle t;

  throttle_init (&t, 0, 0);
  assert_int_equal (throttle_delay (&t, UINT64_MAX, 0), 0);
  assert_int_equal (throttle_max_request (&t, 4096, 1 << 20), 1 << 20);
}

static void
from_unlimited_to_limited_starts_fresh (void **state)
{
  struct throttle t;

  throttle_init (&t, 0, 0);
  throttle_delay (&t, 1ull << 40, 0);
  throttle_set_rate (&t, MiB, 10 * SEC);
  /* no debt from the unlimited part: only the start slot (a 20th of a
   * second, less the tolerance) to wait */
  assert_true (throttle_delay (&t, 4096, 10 * SEC) <= SEC / 20);
  assert_int_equal (throttle_delay (&t, 4096, 10 * SEC + SEC / 20), 0);
}

/* Over the first second, largest requests (rate/20) from the start: at
 * most the rate and the tolerance, not a request more (it was +7%). */
static void
first_second_has_no_burst (void **state)
{
  uint64_t per_sec[2];

  simulate (MiB, 0, MiB / 20, 2, per_sec);
  assert_true (per_sec[0] <= MiB + MiB * 3 / 100);
  assert_true (per_sec[0] >= MiB * 95 / 100);
}

static void
huge_request_does_not_overflow (void **state)
{
  struct throttle t;

  throttle_init (&t, 1, 0);
  assert_int_equal (throttle_delay (&t, UINT64_MAX, 0), 0);
  assert_true (throttle_delay (&t, 1, 0) > 0);
}

static void
max_request_is_a_twentieth (void **state)
{
  struct throttle t;

  throttle_init (&t, 20 * MiB, 0);
  assert_int_equal (throttle_max_request (&t, 4096, 8 * MiB), MiB);
  throttle_set_rate (&t, 1000, 0);
  assert_int_equal (throttle_max_request (&t, 4096, 8 * MiB), 4096);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (each_second_within_5_percent),
    cmocka_unit_test (rate_change_mid_job),
    cmocka_unit_test (unlimited_never_waits),
    cmocka_unit_test (from_unlimited_to_limited_starts_fresh),
    cmocka_unit_test (first_second_has_no_burst),
    cmocka_unit_test (huge_request_does_not_overflow),
    cmocka_unit_test (max_request_is_a_twentieth),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
