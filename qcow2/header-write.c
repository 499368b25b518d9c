/* Header rewrite: a new backing file name and backing-format extension in one write of cluster 0. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

/* Cluster 0 being assembled. */
struct hbuf {
  struct qcow2_state *s;
  unsigned char *out;
  uint64_t pos;
  uint64_t need;                 /* bytes wanted so far, even past cs */
};

static void
put_ext (struct hbuf *b, uint32_t type, const void *data, uint32_t len)
{
  uint64_t size = 8 + ROUND_UP ((uint64_t) len, 8);

  if (b->need + size <= b->s->cluster_size)
    {
      put_be32 (b->out + b->pos, type);
      put_be32 (b->out + b->pos + 4, len);
      memcpy (b->out + b->pos + 8, data, len);
      b->pos += size;
    }
  b->need += size;
}

/* Every extension of the old cluster 0 but the backing format, verbatim
 * and in order (feature table, unknown ones). They were validated at open. */
static void
copy_exts (struct hbuf *b, const unsigned char *c0)
{
  const struct qcow2_state *s = b->s;
  uint64_t off = s->h.header_length, end = s->cluster_size;
  uint32_t type, len;

  if (s->h.backing_file_offset && s->h.backing_file_offset < end)
    end = s->h.backing_file_offset;
  while (end - off >= 8)
    {
      type = get_be32 (c0 + off);
      len = get_be32 (c0 + off + 4);
      if (type == QCOW2_EXT_END || len > end - off - 8)
        break;
      if (type != QCOW2_EXT_BACKING_FORMAT)
        put_ext (b, type, c0 + off + 8, len);
      off += 8 + ROUND_UP ((uint64_t) len, 8);
    }
}

static int
check_names (struct qcow2_state *s, const char *name, const char *format)
{
  size_t i, flen = format ? strlen (format) : 0;

  if (name && strlen (name) > QCOW2_MAX_BACKING_NAME)
    return set_image_error (s->name, ENAMETOOLONG,
                            "backing file name is %zu bytes; qcow2 allows "
                            "at most %u", strlen (name),
                            QCOW2_MAX_BACKING_NAME);
  if (flen > QCOW2_MAX_BACKING_FORMAT)
    return set_image_error (s->name, EINVAL,
                            "backing format name '%s' is longer than %u "
                            "bytes", format, QCOW2_MAX_BACKING_FORMAT);
  for (i = 0; i < flen; i++)
    if (format[i] < 0x20 || format[i] > 0x7e)
      return set_image_error (s->name, EINVAL,
                              "backing format name holds a non-printable "
                              "byte");
  return 0;
}

/* Point the in-memory state at what was written. */
static int
remember (struct qcow2_state *s, const char *name, const char *format,
          uint64_t bfo)
{
  char *n = name ? strdup (name) : NULL;
  char *f = format ? strdup (format) : NULL;

  if ((name && !n) || (format && !f))
    {
      free (n);
      free (f);
      return set_error (ENOMEM, "out of memory");
    }
  free (s->backing_file);
  free (s->backing_format);
  s->backing_file = n;
  s->backing_format = f;
  s->h.backing_file_offset = bfo;
  s->h.backing_file_size = name ? (uint32_t) strlen (name) : 0;
  return 0;
}

static int
build (struct hbuf *b, const unsigned char *c0, const char *name,
       const char *format)
{
  struct qcow2_state *s = b->s;
  uint64_t nlen = name ? strlen (name) : 0, bfo = 0;

  /* The header with any fields past the ones known, byte for byte. */
  memcpy (b->out, c0, s->h.header_length);
  b->pos = b->need = s->h.header_length;
  if (format)
    put_ext (b, QCOW2_EXT_BACKING_FORMAT, format, (uint32_t) strlen (format));
  copy_exts (b, c0);
  b->need += 8;                  /* end marker, zeroes already */
  b->pos += 8;
  if (nlen)
    {
      bfo = b->need;
      if (b->need + nlen <= s->cluster_size)
        memcpy (b->out + bfo, name, nlen);
      b->need += nlen;
    }
  if (b->need > s->cluster_size)
    return set_image_error (s->name, ENOSPC,
                            "backing file name and header extensions need "
                            "%" PRIu64 " bytes; they do not fit in the "
                            "header cluster (%" PRIu32 " bytes)",
                            b->need, s->cluster_size);
  put_be64 (b->out + 8, bfo);
  put_be32 (b->out + 16, (uint32_t) nlen);
  return 0;
}

int
qcow2_set_backing_op (void *st, const char *name, const char *format)
{
  struct qcow2_state *s = st;
  struct hbuf b = { .s = s };
  unsigned char *c0;
  int r;

  if (!s->writable)
    return set_image_error (s->name, EBADF, "image is not open for "
                            "writing");
  if (name && !*name)
    name = NULL;
  if (!name || (format && !*format))
    format = NULL;
  r = check_names (s, name, format);
  if (r < 0)
    return r;
  /* Everything else first: the header is the last thing to change. */
  r = qcow2_flush_op (s);
  if (r < 0)
    return r;
  c0 = malloc (s->cluster_size);
  b.out = calloc (1, s->cluster_size);
  if (c0 == NULL || b.out == NULL)
    r = set_error (ENOMEM, "out of memory");
  if (r == 0)
    r = io_pread (s->io, c0, s->cluster_size, 0);
  if (r == 0)
    r = build (&b, c0, name, format);
  if (r == 0)
    r = qcow2_write (s, b.out, s->cluster_size, 0);
  if (r == 0)
    r = qcow2_barrier (s);
  if (r == 0)
    r = remember (s, name, format, get_be64 (b.out + 8));
  free (c0);
  free (b.out);
  return r;
}
