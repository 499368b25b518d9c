/* Bandwidth throttle for jobs: a token bucket on bytes moved, rate changeable mid-job. */
#ifndef QC_THROTTLE_H
#define QC_THROTTLE_H

#include <stdint.h>

/*
 * Generic cell rate algorithm: each admitted byte pushes a theoretical
 * arrival time forward by 1/rate seconds; a request may go when that time
 * is at most `tolerance` ahead of now. Over any second no more than
 * rate * (1 s + tolerance) + one request passes, so with requests of at
 * most rate/20 and a 20 ms tolerance the rate holds to about ±5%.
 */
struct throttle {
  uint64_t rate;          /* bytes per second; 0 = unlimited */
  uint64_t tat_ns;        /* theoretical arrival time of the next byte */
  uint64_t tolerance_ns;
};

#define THROTTLE_TOLERANCE_NS (20u * 1000 * 1000)
/* The largest request is rate / THROTTLE_STEPS: 5% of a second's worth. */
#define THROTTLE_STEPS 20u

void throttle_init (struct throttle *t, uint64_t rate, uint64_t now_ns);
/* Takes effect for the next request; bytes already admitted stay paid. */
void throttle_set_rate (struct throttle *t, uint64_t rate, uint64_t now_ns);
/* Nanoseconds to wait before the next request may go (0 = now). */
uint64_t throttle_wait (const struct throttle *t, uint64_t now_ns);
/* Account for bytes moved by a request that was allowed to go. */
void throttle_charge (struct throttle *t, uint64_t bytes, uint64_t now_ns);
/* Both: nanoseconds to wait before `bytes` may go; 0 means go now, and
 * the bytes are then accounted for. Ask again after waiting. */
uint64_t throttle_delay (struct throttle *t, uint64_t bytes, uint64_t now_ns);
/* The largest request that keeps the rate accurate (at least min). */
uint64_t throttle_max_request (const struct throttle *t, uint64_t min,
                               uint64_t max);
/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t throttle_now_ns (void);

#endif
