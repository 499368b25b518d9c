/* The guest view of a chain: block status with qemu-img map's semantics, and reads. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "chain.h"

/* One layer's status, checked: a driver answering 0 bytes or more than
 * asked would stall or overrun the walks below. */
static int
layer_status (struct layer *l, uint64_t off, uint64_t len,
              struct layer_extent *le)
{
  int r;

  memset (le, 0, sizeof *le);
  r = l->ops->status (l->st, off, len, le);
  if (r < 0)
    return r;
  if (le->len == 0 || le->len > len)
    return set_image_error (l->path, EIO,
                            "format driver answered %" PRIu64 " bytes for a "
                            "%" PRIu64 "-byte status query at %" PRIu64,
                            le->len, len, off);
  return 0;
}

/* Data the format places in the file can still be a hole there: qemu asks
 * the file when the driver says so (metadata-preallocated qcow2). A hole
 * reaching EOF makes the whole run zero; errors keep the format's answer. */
static void
refine_with_host (struct layer *l, struct qc_extent *e)
{
  uint64_t run;
  bool is_data;

  if (io_extent (l->io, e->offset, e->length, &is_data, &run) < 0
      || run == 0 || run > e->length)
    return;
  e->length = run;
  if (!is_data)
    e->zero = 1;
}

int
chain_cursor_init (struct chain_cursor *cur, const struct chain *c)
{
  cur->n = c->n;
  cur->l = calloc (c->n, sizeof *cur->l);   /* len 0: nothing known */
  if (cur->l == NULL)
    return set_error (ENOMEM, "out of memory");
  return 0;
}

void
chain_cursor_free (struct chain_cursor *cur)
{
  free (cur->l);
  cur->l = NULL;
  cur->n = 0;
}

/* From the cursor when its last answer covers off: a run is uniform, and
 * its host offsets contiguous. */
int
chain_layer_status (struct chain *c, struct chain_cursor *cur, unsigned d,
                    uint64_t off, uint64_t len, struct layer_extent *le)
{
  struct layer *l = &c->layers[d];
  struct chain_cursor_layer *cl;
  uint64_t skip;
  int r;

  if (cur == NULL || d >= cur->n)
    return layer_status (l, off, len, le);
  cl = &cur->l[d];
  if (cl->le.len && off >= cl->off && off - cl->off < cl->le.len) {
    skip = off - cl->off;
    *le = cl->le;
    le->len = MIN (cl->le.len - skip, len);
    if (le->has_offset)
      le->host_off += skip;
    return 0;
  }
  r = layer_status (l, off, len, le);
  if (r == 0) {
    cl->off = off;
    cl->le = *le;
  }
  return r;
}

static void
set_found (struct qc_extent *e, const struct layer_extent *le)
{
  e->present = 1;
  e->zero = le->type == EXT_ZERO;
  e->data = le->type == EXT_DATA || le->type == EXT_COMPRESSED;
  e->has_offset = le->type != EXT_COMPRESSED && le->has_offset;
  e->offset = e->has_offset ? le->host_off : 0;
}

int
chain_block_status (struct chain *c, unsigned depth, uint64_t off,
                    uint64_t len, struct qc_extent *e)
{
  return chain_block_status_above (c, depth, c->n, off, len, e);
}

int
chain_block_status_above (struct chain *c, unsigned depth, unsigned stop,
                          uint64_t off, uint64_t len, struct qc_extent *e)
{
  return chain_block_status_cur (c, NULL, depth, stop, off, len, e);
}

int
chain_block_status_cur (struct chain *c, struct chain_cursor *cur,
                        unsigned depth, unsigned stop, uint64_t off,
                        uint64_t len, struct qc_extent *e)
{
  struct layer_extent le;
  uint64_t run;
  unsigned d;
  int r;

  if (stop > c->n || stop <= depth)
    return set_error (EINVAL, "layers %u..%u are outside the chain (%u "
                      "layers)", depth, stop, c->n);
  if (depth >= c->n)
    return set_error (EINVAL, "depth %u is outside the chain (%u layers)",
                      depth, c->n);
  if (off >= c->layers[depth].info.virtual_size || len == 0)
    return set_image_error (c->layers[depth].path, EINVAL,
                            "block status at %" PRIu64 "+%" PRIu64
                            " is outside the image", off, len);
  memset (e, 0, sizeof *e);
  e->start = off;
  run = len;
  for (d = depth;; d++) {
    struct layer *l = &c->layers[d];

    /* A short backing file answers only up to its end; the overlay
     * checked that off itself is inside. */
    run = MIN (run, l->info.virtual_size - off);
    /* With a cursor each layer is asked about all of len, not only the
     * run the layers above left: its answer then serves the next calls
     * too (a 64-layer flatten asked the drivers 7875 times for 463
     * extents, most of them again about what they had just answered). */
    r = chain_layer_status (c, cur, d, off,
                            cur ? MIN (len, l->info.virtual_size - off) : run,
                            &le);
    if (r < 0)
      return r;
    run = MIN (run, le.len);
    e->length = run;
    e->depth = d;
    if (le.type != EXT_UNALLOC) {
      set_found (e, &le);
      if (le.type == EXT_DATA && e->has_offset && le.recurse)
        refine_with_host (l, e);
      return 0;
    }
    /* Unallocated with nothing (inside its size) below: reads as zero,
     * decided at this layer but allocated nowhere. An unallocated
     * subcluster of an allocated cluster keeps its host offset, as in qemu. */
    if (d + 1 >= c->n || off >= c->layers[d + 1].info.virtual_size) {
      e->zero = 1;
      e->has_offset = le.has_offset;
      e->offset = le.has_offset ? le.host_off : 0;
      return 0;
    }
    /* Allocated in none of the layers asked about. */
    if (d + 1 >= stop) {
      e->depth = stop;
      return 0;
    }
  }
}

/* Read [off, off+n) of the guest view of layer d; beyond the chain or the
 * layer's end reads as zero. Recursion is bounded by the chain depth. */
static int
read_layer (struct chain *c, unsigned d, unsigned char *buf, size_t n,
            uint64_t off)
{
  struct layer_extent le;
  struct layer *l;
  uint64_t size;
  size_t avail, k;
  int r;

  if (d >= c->n) {
    memset (buf, 0, n);
    return 0;
  }
  l = &c->layers[d];
  size = l->info.virtual_size;
  avail = off >= size ? 0 : (size_t) MIN ((uint64_t) n, size - off);
  memset (buf + avail, 0, n - avail);
  while (avail > 0) {
    r = layer_status (l, off, avail, &le);
    if (r < 0)
      return r;
    k = (size_t) le.len;
    switch (le.type) {
    case EXT_DATA:
    case EXT_COMPRESSED:
      r = l->ops->read (l->st, buf, k, off);
      break;
    case EXT_ZERO:
      memset (buf, 0, k);
      r = 0;
      break;
    default:
      r = read_layer (c, d + 1, buf, k, off);
      break;
    }
    if (r < 0)
      return r;
    buf += k;
    off += k;
    avail -= k;
  }
  return 0;
}

int
chain_read (struct chain *c, unsigned depth, void *buf, size_t n,
            uint64_t off)
{
  uint64_t end;

  if (depth >= c->n)
    return set_error (EINVAL, "depth %u is outside the chain (%u layers)",
                      depth, c->n);
  if (ADD_OVERFLOW (off, (uint64_t) n, &end))
    return set_image_error (c->layers[depth].path, EINVAL,
                            "read at %" PRIu64 "+%zu overflows", off, n);
  return read_layer (c, depth, buf, n, off);
}

/* The view below layer `depth` (its backing chain), for copy-on-write;
 * chain_read already reads past a layer's end as zeroes. */
static int
backing_read (void *opaque, void *buf, size_t n, uint64_t off)
{
  struct chain_below *b = opaque;

  if (b->depth + 1 >= b->chain->n) {
    memset (buf, 0, n);
    return 0;
  }
  return chain_read (b->chain, b->depth + 1, buf, n, off);
}

void
chain_backing_reader (struct chain *c, unsigned depth, struct chain_below *b,
                      struct backing_reader *br)
{
  b->chain = c;
  b->depth = depth;
  br->read = backing_read;
  br->opaque = b;
  br->size = depth + 1 < c->n ? c->layers[depth + 1].info.virtual_size : 0;
}
