/* The in-memory backend of the I/O interface, for tests and fuzzers. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "errors.h"
#include "io.h"

/* Images in memory are small by design; refuse to grow past this. */
#define MEM_MAX ((uint64_t) 1 << 32)

struct mem_io {
  struct io io;
  unsigned char *data;
  size_t len;
  size_t cap;
  /* Crash simulation: after this many writes, writes are dropped. */
  uint64_t writes;
  uint64_t write_limit;          /* UINT64_MAX = none */
};

static struct mem_io *
to_mem (struct io *io)
{
  return (struct mem_io *) io;
}

static int
mem_pread (struct io *io, void *buf, size_t n, uint64_t off)
{
  struct mem_io *m = to_mem (io);
  size_t avail = off < m->len ? m->len - (size_t) off : 0;
  size_t take = n < avail ? n : avail;

  if (take)
    memcpy (buf, m->data + off, take);
  memset ((char *) buf + take, 0, n - take);
  return 0;
}

static int
mem_reserve (struct mem_io *m, uint64_t end)
{
  size_t cap;
  unsigned char *p;

  if (end > MEM_MAX)
    return set_image_error (m->io.name, EFBIG, "in-memory image too large");
  if (end <= m->cap)
    return 0;
  cap = m->cap ? m->cap : 4096;
  while (cap < end)
    cap *= 2;
  p = realloc (m->data, cap);
  if (p == NULL)
    return set_error (ENOMEM, "out of memory");
  memset (p + m->cap, 0, cap - m->cap);
  m->data = p;
  m->cap = cap;
  return 0;
}

static int
mem_pwrite (struct io *io, const void *buf, size_t n, uint64_t off)
{
  struct mem_io *m = to_mem (io);
  uint64_t end;
  int r;

  if (ADD_OVERFLOW (off, (uint64_t) n, &end))
    return set_image_error (io->name, EFBIG, "write past the largest offset");
  if (m->writes++ >= m->write_limit)
    return 0;                    /* "crashed": the write never lands */
  r = mem_reserve (m, end);
  if (r < 0)
    return r;
  memcpy (m->data + off, buf, n);
  if (end > m->len)
    m->len = (size_t) end;
  return 0;
}

static int
mem_flush (struct io *io)
{
  return 0;
}

static int
mem_get_size (struct io *io, uint64_t *size)
{
  *size = to_mem (io)->len;
  return 0;
}

static int
mem_truncate (struct io *io, uint64_t size)
{
  struct mem_io *m = to_mem (io);
  int r;

  if (m->writes++ >= m->write_limit)
    return 0;
  r = mem_reserve (m, size);
  if (r < 0)
    return r;
  if (size < m->len)
    memset (m->data + size, 0, m->len - (size_t) size);
  m->len = (size_t) size;
  return 0;
}

static int
mem_zero (struct io *io, uint64_t off, uint64_t len)
{
  struct mem_io *m = to_mem (io);
  uint64_t end;

  if (ADD_OVERFLOW (off, len, &end))
    return set_image_error (io->name, EFBIG, "zero past the largest offset");
  if (m->writes++ >= m->write_limit)
    return 0;
  if (off < m->len)
    memset (m->data + off, 0, (end < m->len ? end : m->len) - off);
  return 0;
}

/* Memory has no holes: everything inside is data, past the end a hole. */
static int
mem_extent (struct io *io, uint64_t off, uint64_t len, bool *is_data,
            uint64_t *run)
{
  struct mem_io *m = to_mem (io);

  *is_data = off < m->len;
  *run = *is_data && m->len - off < len ? m->len - off : len;
  return 0;
}

static int
mem_allocated (struct io *io, uint64_t *bytes)
{
  *bytes = to_mem (io)->len;
  return 0;
}

static void
mem_close (struct io *io)
{
  free (to_mem (io)->data);
}

static const struct io_ops mem_ops = {
  .kind = "memory",
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .flush = mem_flush,
  .get_size = mem_get_size,
  .truncate = mem_truncate,
  .zero = mem_zero,
  .extent = mem_extent,
  .allocated = mem_allocated,
  .close = mem_close,
};

int
io_open_mem (const char *name, const void *data, size_t len, struct io **out)
{
  struct mem_io *m = calloc (1, sizeof *m);
  int r;

  if (m == NULL || (m->io.name = strdup (name)) == NULL) {
    free (m);
    return set_error (ENOMEM, "out of memory");
  }
  m->io.ops = &mem_ops;
  m->io.fd = -1;
  m->io.dfd = -1;
  m->io.writable = true;
  m->write_limit = UINT64_MAX;
  r = mem_reserve (m, len);
  if (r < 0) {
    free (m->io.name);
    free (m);
    return r;
  }
  if (len)
    memcpy (m->data, data, len);
  m->len = len;
  m->io.virgin = len;
  *out = &m->io;
  return 0;
}

const unsigned char *
io_mem_data (struct io *io, size_t *len)
{
  *len = to_mem (io)->len;
  return to_mem (io)->data;
}

void
io_mem_set_write_limit (struct io *io, uint64_t limit)
{
  to_mem (io)->write_limit = limit;
  to_mem (io)->writes = 0;
}

uint64_t
io_mem_writes (struct io *io)
{
  return to_mem (io)->writes;
}
