/* Compression of one cluster: raw deflate (zlib) and zstd, both directions. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "errors.h"
#include "qcow2.h"

/* qcow2 deflate streams are raw (no zlib header) with a 4 KiB window. */
#define QCOW2_DEFLATE_WINDOW_BITS (-12)
/* 8 MiB: four times the largest cluster. */
#define QCOW2_ZSTD_WINDOW_LOG_MAX 23

int
qcow2_decompress_zlib (const char *name, void *dst, size_t dst_len,
                       const void *src, size_t src_len)
{
  z_stream z;
  int r;

  /* Both lengths are bounded by two clusters (4 MiB). */
  if (dst_len > UINT_MAX || src_len > UINT_MAX)
    return set_image_error (name, EIO, "compressed cluster too large");
  memset (&z, 0, sizeof z);
  r = inflateInit2 (&z, QCOW2_DEFLATE_WINDOW_BITS);
  if (r != Z_OK)
    return set_image_error (name, r == Z_MEM_ERROR ? ENOMEM : EIO,
                            "cannot initialise zlib: %s",
                            z.msg ? z.msg : "error");
  z.next_in = (Bytef *) src;
  z.avail_in = (uInt) src_len;
  z.next_out = dst;
  z.avail_out = (uInt) dst_len;
  r = inflate (&z, Z_FINISH);
  inflateEnd (&z);
  /* Decompression stops once the cluster is full: the stream may go on
   * (Z_BUF_ERROR, Z_OK) or end right there (Z_STREAM_END). Anything that
   * leaves the cluster short is damage. */
  if ((r == Z_STREAM_END || r == Z_OK || r == Z_BUF_ERROR)
      && z.avail_out == 0)
    return 0;
  if (r == Z_STREAM_END || r == Z_BUF_ERROR)
    return set_image_error (name, EIO,
                            "zlib-compressed cluster decompresses to %zu "
                            "bytes, not %zu",
                            dst_len - z.avail_out, dst_len);
  return set_image_error (name, EIO,
                          "cannot decompress zlib-compressed cluster: %s",
                          z.msg ? z.msg : zError (r));
}

int
qcow2_decompress_zstd (const char *name, void **dctx, void *dst,
                       size_t dst_len, const void *src, size_t src_len)
{
  ZSTD_inBuffer in = { src, src_len, 0 };
  ZSTD_outBuffer out = { dst, dst_len, 0 };
  size_t ret = 1;

  if (*dctx == NULL)
    {
      *dctx = ZSTD_createDCtx ();
      if (*dctx == NULL)
        return set_error (ENOMEM, "out of memory");
      /* A frame may ask for a 128 MiB window; one cluster never needs it. */
      ZSTD_DCtx_setParameter (*dctx, ZSTD_d_windowLogMax,
                              QCOW2_ZSTD_WINDOW_LOG_MAX);
    }
  ZSTD_DCtx_reset (*dctx, ZSTD_reset_session_only);

  /* The data may be several frames back to back; the stream decoder moves
   * from one to the next by itself. Stop when the cluster is full and the
   * current frame has ended; what follows in the last sector belongs to
   * nobody (or to the next compressed cluster). */
  while (out.pos < out.size || ret != 0)
    {
      size_t in_before = in.pos, out_before = out.pos;

      ret = ZSTD_decompressStream (*dctx, &out, &in);
      if (ZSTD_isError (ret))
        return set_image_error (name, EIO,
                                "cannot decompress zstd-compressed cluster: "
                                "%s", ZSTD_getErrorName (ret));
      if (in.pos == in_before && out.pos == out_before)
        break;                   /* no progress: input used up or output full */
    }
  if (out.pos < out.size)
    return set_image_error (name, EIO,
                            "zstd-compressed cluster decompresses to %zu "
                            "bytes, not %zu", out.pos, out.size);
  if (ret != 0)
    return set_image_error (name, EIO,
                            "zstd-compressed cluster holds more than one "
                            "cluster of data");
  return 0;
}

void
qcow2_zstd_free (void *dctx)
{
  ZSTD_freeDCtx (dctx);
}

/* ---- compression (compressed writes) ---- */

int
qcow2_compress_zlib (const char *name, void *dst, size_t dst_cap,
                     const void *src, size_t src_len)
{
  z_stream z;
  int r;

  if (dst_cap > UINT_MAX || src_len > UINT_MAX)
    return set_image_error (name, EINVAL, "cluster too large to compress");
  memset (&z, 0, sizeof z);
  /* Raw deflate, 4 KiB window, as qemu writes it. */
  r = deflateInit2 (&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                    QCOW2_DEFLATE_WINDOW_BITS, 9, Z_DEFAULT_STRATEGY);
  if (r != Z_OK)
    return set_image_error (name, r == Z_MEM_ERROR ? ENOMEM : EIO,
                            "cannot initialise zlib compression");
  z.next_in = (Bytef *) src;
  z.avail_in = (uInt) src_len;
  z.next_out = dst;
  z.avail_out = (uInt) dst_cap;
  r = deflate (&z, Z_FINISH);
  deflateEnd (&z);
  if (r == Z_STREAM_END)
    return (int) (dst_cap - z.avail_out);
  if (r == Z_OK || r == Z_BUF_ERROR)
    return 0;                    /* does not fit: not worth compressing */
  return set_image_error (name, EIO, "zlib compression failed: %s",
                          zError (r));
}

int
qcow2_compress_zstd (const char *name, void **cctx, void *dst,
                     size_t dst_cap, const void *src, size_t src_len)
{
  size_t ret;

  if (*cctx == NULL)
    {
      *cctx = ZSTD_createCCtx ();
      if (*cctx == NULL)
        return set_error (ENOMEM, "out of memory");
    }
  ret = ZSTD_compress2 (*cctx, dst, dst_cap, src, src_len);
  if (ZSTD_isError (ret))
    {
      if (ZSTD_getErrorCode (ret) == ZSTD_error_dstSize_tooSmall)
        return 0;
      return set_image_error (name, EIO, "zstd compression failed: %s",
                              ZSTD_getErrorName (ret));
    }
  return (int) ret;
}

void
qcow2_zstd_cfree (void *cctx)
{
  ZSTD_freeCCtx (cctx);
}
