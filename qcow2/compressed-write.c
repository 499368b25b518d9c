/* Compressed cluster writes: compress, pack into shared host clusters as qemu does, point the L2 entry at it. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

/* Compressed size of the cluster at src into s->cwbuf, 0 if it does not
 * shrink below a cluster (qemu's limit: at most cluster_size - 1). */
static int
compress_cluster (struct qcow2_state *s, const void *src)
{
  size_t cap = s->cluster_size - 1;

  if (s->h.compression_type == QCOW2_COMPRESS_ZSTD)
    return qcow2_compress_zstd (s->name, &s->zstd_cctx, s->cwbuf, cap, src,
                                s->cluster_size);
  return qcow2_compress_zlib (s->name, s->cwbuf, cap, src, s->cluster_size);
}

/* The descriptor: host offset in bits 0..x-1, the number of 512-byte
 * sectors after the first in bits x..61 (qcow2.txt). */
static int
descriptor (struct qcow2_state *s, uint64_t off, uint64_t len, uint64_t *e)
{
  unsigned x = 62 - (s->h.cluster_bits - 8);
  uint64_t nb = ((off + len - 1) >> 9) - (off >> 9);

  if (off >> x)
    return set_image_error (s->name, EFBIG,
                            "compressed data at 0x%" PRIx64 " is beyond "
                            "what a compressed descriptor can address", off);
  *e = QCOW2_OFLAG_COMPRESSED | (nb << x) | off;
  return 0;
}

static int
write_one (struct qcow2_state *s, uint64_t g, size_t len)
{
  unsigned shift = s->h.cluster_bits + s->l2_bits;
  uint64_t i = (g >> s->h.cluster_bits) & ((1ull << s->l2_bits) - 1);
  uint64_t l2_off, old, bm, off, e = 0;
  unsigned char *t;
  int r;

  r = qcow2_l2_for_write (s, g >> shift, &t, &l2_off);
  if (r < 0)
    return r;
  old = qcow2_l2_get (s, t, i, &bm);
  r = qcow2_alloc_bytes (s, len, &off);
  if (r == 0)
    r = descriptor (s, off, len, &e);
  if (r == 0)
    r = qcow2_write (s, s->cwbuf, len, off);
  if (r < 0)
    return r;
  s->dcache_valid = false;
  /* The allocation may have touched caches: look the table up again. */
  r = qcow2_l2_cache_get_mut (&s->l2, s->io, l2_off, &t);
  if (r < 0)
    return r;
  qcow2_l2_put (s, t, i, e, 0);
  return qcow2_free_entry_later (s, old);
}

int
qcow2_pwrite_compressed_op (void *st, const void *buf, size_t n,
                            uint64_t off)
{
  struct qcow2_state *s = st;
  const unsigned char *p = buf;
  uint64_t cs = s->cluster_size, g, clen;
  const void *src;
  int r;

  if (!s->writable)
    return set_image_error (s->name, EBADF, "image is not open for "
                            "writing");
  if (!range_within (off, n, s->h.size) || !IS_ALIGNED (off, cs)
      || (!IS_ALIGNED ((uint64_t) n, cs) && off + n != s->h.size))
    return set_image_error (s->name, EINVAL,
                            "compressed write of %zu bytes at 0x%" PRIx64
                            " is not whole clusters inside the image",
                            n, off);
  for (g = off; g < off + n; g += clen)
    {
      clen = MIN (cs, off + n - g);
      src = p + (g - off);
      if (clen < cs)
        {
          memcpy (s->wbuf, src, clen);
          memset (s->wbuf + clen, 0, cs - clen);
          src = s->wbuf;
        }
      r = compress_cluster (s, src);
      if (r == 0)
        r = qcow2_pwrite_op (s, p + (g - off), clen, g);
      else if (r > 0)
        r = write_one (s, g, (size_t) r);
      if (r < 0)
        return r;
    }
  return 0;
}
