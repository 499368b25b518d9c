/* qc_compare: are two guest views equal, and where do they first differ. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "internal.h"
#include "rounding.h"

#define CMP_BUF (1u << 20)

/* First offset in [0, n) where a and b differ; n if none. */
static size_t
first_difference (const unsigned char *a, const unsigned char *b, size_t n)
{
  size_t i = 0;

  /* memcmp in blocks finds the block quickly; the byte loop runs once. */
  while (i < n) {
    size_t step = MIN ((size_t) 4096, n - i);
    if (memcmp (a + i, b + i, step) != 0)
      break;
    i += step;
  }
  while (i < n && a[i] == b[i])
    i++;
  return i;
}

static size_t
first_nonzero (const unsigned char *a, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (a[i])
      break;
  return i;
}

/* The part both images have. Sets *diff and returns 1 at a difference. */
static int
compare_common (struct chain *a, struct chain *b, uint64_t size,
                unsigned char *ba, unsigned char *bb, uint64_t *diff)
{
  uint64_t off = 0;

  while (off < size) {
    struct qc_extent ea, eb;
    uint64_t n;
    size_t at;
    int r;

    r = chain_block_status (a, 0, off, MIN (size - off, (uint64_t) 1 << 30), &ea);
    if (r == 0)
      r = chain_block_status (b, 0, off, ea.length, &eb);
    if (r < 0)
      return r;
    n = MIN (ea.length, eb.length);
    if (ea.zero && eb.zero) {
      off += n;
      continue;
    }
    n = MIN (n, (uint64_t) CMP_BUF);
    if ((r = chain_read (a, 0, ba, n, off)) < 0
        || (r = chain_read (b, 0, bb, n, off)) < 0)
      return r;
    at = first_difference (ba, bb, n);
    if (at < n) {
      *diff = off + at;
      return 1;
    }
    off += n;
  }
  return 0;
}

/* The tail of the longer image must read as zeroes. */
static int
compare_tail (struct chain *c, uint64_t off, uint64_t size, unsigned char *buf,
              uint64_t *diff)
{
  while (off < size) {
    struct qc_extent e;
    uint64_t n;
    size_t at;
    int r;

    r = chain_block_status (c, 0, off, MIN (size - off, (uint64_t) 1 << 30), &e);
    if (r < 0)
      return r;
    if (e.zero) {
      off += e.length;
      continue;
    }
    n = MIN (e.length, (uint64_t) CMP_BUF);
    r = chain_read (c, 0, buf, n, off);
    if (r < 0)
      return r;
    at = first_nonzero (buf, n);
    if (at < n) {
      *diff = off + at;
      return 1;
    }
    off += n;
  }
  return 0;
}

int
qc_compare (struct qc_image *a, struct qc_image *b, uint64_t *first_diff)
{
  uint64_t sa = a->chain->layers[0].info.virtual_size;
  uint64_t sb = b->chain->layers[0].info.virtual_size;
  unsigned char *ba = NULL, *bb = NULL;
  uint64_t diff = 0;
  int r;

  clear_error ();
  ba = malloc (CMP_BUF);
  bb = malloc (CMP_BUF);
  if (ba == NULL || bb == NULL) {
    r = set_error (ENOMEM, "out of memory");
    goto out;
  }
  r = compare_common (a->chain, b->chain, MIN (sa, sb), ba, bb, &diff);
  if (r == 0 && sa != sb)
    r = compare_tail (sa > sb ? a->chain : b->chain, MIN (sa, sb),
                      MAX (sa, sb), ba, &diff);
 out:
  free (ba);
  free (bb);
  if (r < 0)
    return public_error (r);
  if (r == 1 && first_diff)
    *first_diff = diff;
  return r;
}
