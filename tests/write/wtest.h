/* tests/write: helpers shared by the write-path test programs (header only). */
#ifndef QC_WTEST_H
#define QC_WTEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <getopt.h>

#include "format.h"
#include "qchain.h"

static const char *wt_prog = "wtest";

static void wt_die (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2), noreturn));

static void
wt_die (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: FAIL: ", wt_prog);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (1);
}

/* The library's last error, for messages. */
static inline const char *
wt_err (void)
{
  const char *m = qc_get_error ();

  return m ? m : "(no message)";
}

/* Check a library call returning 0 / -errno. */
#define WT_CALL(what, expr)                                             \
  do {                                                                  \
    int wt_r_ = (expr);                                                 \
    if (wt_r_ < 0)                                                      \
      wt_die ("%s failed: %s (%s)", (what), wt_err (),                  \
              strerror (-wt_r_));                                       \
  } while (0)

/* splitmix64: small, fast, good enough, reproducible everywhere. */
struct wt_rng {
  uint64_t s;
};

static inline uint64_t
wt_next (struct wt_rng *r)
{
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0). */
static inline uint64_t
wt_below (struct wt_rng *r, uint64_t n)
{
  return n ? wt_next (r) % n : 0;
}

/* True with probability pct percent. */
static inline bool
wt_chance (struct wt_rng *r, unsigned pct)
{
  return wt_below (r, 100) < pct;
}

static inline void
wt_random_bytes (struct wt_rng *r, unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i + 8 <= n; i += 8) {
    uint64_t v = wt_next (r);
    memcpy (p + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = wt_next (r);
    memcpy (p + i, &v, n - i);
  }
}

/* Data of one of several kinds: incompressible, one repeated byte, zeroes,
 * and compressible text-like runs (short random phrases repeated). */
enum wt_fill { WT_RANDOM, WT_BYTE, WT_ZERO, WT_PHRASES, WT_NFILL };

static inline void
wt_fill (struct wt_rng *r, unsigned char *p, size_t n, enum wt_fill kind)
{
  size_t i;

  switch (kind) {
  case WT_RANDOM:
    wt_random_bytes (r, p, n);
    break;
  case WT_BYTE:
    memset (p, (int) (wt_below (r, 255) + 1), n);
    break;
  case WT_ZERO:
    memset (p, 0, n);
    break;
  default: {
    unsigned char phrase[64];
    size_t plen = 4 + wt_below (r, 60);

    wt_random_bytes (r, phrase, plen);
    for (i = 0; i < n; i++) {
      p[i] = phrase[i % plen];
      if ((i & 1023) == 1023)
        p[i] ^= (unsigned char) wt_next (r);   /* not quite periodic */
    }
    break;
  }
  }
}

/* "64k", "2M", "1G", "512": bytes, as the library parses sizes. */
static inline uint64_t
wt_parse_size (const char *s)
{
  uint64_t v;

  if (qc_parse_size (s, &v) < 0)
    wt_die ("bad size '%s'", s);
  return v;
}

/* The image-geometry options every write test takes; they fill creation
 * parameters directly. */
enum { WT_O_CS = 1000, WT_O_RB, WT_O_COMPAT, WT_O_EXTL2, WT_O_ZSTD };
#define WT_GEOMETRY_OPTIONS \
  { "cluster-size", required_argument, NULL, WT_O_CS }, \
  { "refcount-bits", required_argument, NULL, WT_O_RB }, \
  { "compat", required_argument, NULL, WT_O_COMPAT }, \
  { "extended-l2", no_argument, NULL, WT_O_EXTL2 }, \
  { "zstd", no_argument, NULL, WT_O_ZSTD }

/* Apply getopt's c to g; false when c is not a geometry option. */
static inline bool
wt_geometry_arg (int c, const char *arg, struct create_params *g)
{
  switch (c) {
  case WT_O_CS: g->cluster_size = (uint32_t) wt_parse_size (arg); return true;
  case WT_O_RB: g->refcount_bits = (uint32_t) wt_parse_size (arg); return true;
  case WT_O_COMPAT:
    if (strcmp (arg, "0.10") == 0)
      g->version = 2;
    else if (strcmp (arg, "1.1") == 0)
      g->version = 3;
    else
      wt_die ("--compat takes 0.10 or 1.1, not '%s'", arg);
    return true;
  case WT_O_EXTL2: g->extended_l2 = true; return true;
  case WT_O_ZSTD: g->zstd = true; return true;
  }
  return false;
}

/* The first differing offset of a and b (n bytes), or -1. */
static inline int64_t
wt_first_diff (const unsigned char *a, const unsigned char *b, size_t n)
{
  size_t i;

  if (memcmp (a, b, n) == 0)
    return -1;
  for (i = 0; i < n; i++)
    if (a[i] != b[i])
      return (int64_t) i;
  return -1;
}

static inline int
wt_write_file (const char *path, const void *buf, size_t n)
{
  FILE *f = fopen (path, "wb");

  if (f == NULL)
    return -errno;
  if (n && fwrite (buf, 1, n, f) != n) {
    int e = errno;
    fclose (f);
    return -(e ? e : EIO);
  }
  if (fclose (f) != 0)
    return -errno;
  return 0;
}

#endif
