/* The I/O engine: request and buffer pools, an io_uring backend and a pread/pwrite fallback. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <liburing.h>

#include "checked-overflow.h"
#include "rounding.h"
#include "errors.h"
#include "engine.h"

#define POOL_HUGE_PAGE (2u << 20)     /* x86-64 and arm64 (4 KiB pages) */

enum req_op { OP_READ, OP_WRITE, OP_FSYNC };

struct req {
  struct req *next;              /* free list or queue */
  enum req_op op;
  int fd;
  int alt_fd;                    /* a write refused with EINVAL goes here */
  int buf_index;                 /* registered buffer, or -1 */
  char *buf;
  uint32_t len, done;            /* done: bytes transferred so far */
  uint64_t off;
  engine_cb cb;
  void *opaque;
};

struct queue {
  struct req *head, *tail;
};

struct engine {
  bool uring;
  bool fixed;                    /* pool registered with the ring */
  bool waiting;                  /* in a reaping loop: callbacks may run */
  bool cancelling;
  bool quiet;                    /* engine_free: callbacks no longer run */
  unsigned depth, inflight;
  unsigned fallbacks;            /* writes redone on their alt_fd */
  struct req *reqs, *free_reqs;
  /* Not yet handed to the kernel (new requests and resubmissions of the
   * rest of a short transfer). */
  struct queue queued;
  /* Sync backend: the last request queued by the running callback. Its
   * follow-ups go to the front, in order, so that a read's data is
   * written while still in the cache. */
  struct req *follow;
  char *pool;
  size_t pool_len, buf_size, stride;
  unsigned nbufs, nfree_bufs;
  unsigned *free_bufs;           /* stack of free buffer indexes */
  struct io_uring ring;
};

static void
queue_push (struct queue *q, struct req *r)
{
  r->next = NULL;
  if (q->tail)
    q->tail->next = r;
  else
    q->head = r;
  q->tail = r;
}

static void
queue_insert_after (struct queue *q, struct req *prev, struct req *r)
{
  if (!prev) {
    r->next = q->head;
    q->head = r;
  }
  else {
    r->next = prev->next;
    prev->next = r;
  }
  if (q->tail == prev)
    q->tail = r;
}

static struct req *
queue_pop (struct queue *q)
{
  struct req *r = q->head;

  if (r) {
    q->head = r->next;
    if (!q->head)
      q->tail = NULL;
  }
  return r;
}

/* The slot goes back before the callback runs so that the callback can
 * always queue a follow-up, whatever the depth. */
static void
finish (struct engine *e, struct req *r, int res)
{
  engine_cb cb = r->cb;
  void *opaque = r->opaque;

  r->next = e->free_reqs;
  e->free_reqs = r;
  e->inflight--;
  e->follow = NULL;
  if (!e->quiet)
    cb (opaque, res);
}

/* A short read ends at EOF when the file ends there. Asking beats reading
 * again until 0: with O_DIRECT the rest would start unaligned and fail.
 * Devices and anything else unusual: a short read means their end. */
static bool
read_hit_eof (const struct req *r)
{
  struct stat st;

  if (fstat (r->fd, &st) == -1 || !S_ISREG (st.st_mode))
    return true;
  return r->off + r->done >= (uint64_t) st.st_size;
}

/* Account for one transfer result (bytes or -errno). True when the request
 * is over with *result for its callback; false when the rest must be
 * submitted again. */
static bool
progress (struct engine *e, struct req *r, int res, int *result)
{
  if (res == -EINTR || res == -EAGAIN) {
    *result = -ECANCELED;
    return e->cancelling;
  }
  if (res == -EINVAL && r->op == OP_WRITE && r->alt_fd >= 0) {
    /* An O_DIRECT write the file system will not take: the rest of it
     * goes through the page cache instead. */
    r->fd = r->alt_fd;
    r->alt_fd = -1;
    e->fallbacks++;
    *result = -ECANCELED;
    return e->cancelling;
  }
  if (res < 0 || r->op == OP_FSYNC) {
    *result = res < 0 ? res : 0;
    return true;
  }
  r->done += (uint32_t) res;
  *result = (int) r->done;
  if (r->done >= r->len)
    return true;
  if (r->op == OP_READ && (res == 0 || read_hit_eof (r)))
    return true;
  if (r->op == OP_WRITE && res == 0) {
    *result = -EIO;             /* no progress: retrying would spin */
    return true;
  }
  *result = -ECANCELED;
  return e->cancelling;
}

/* Requests not started yet complete as cancelled, including any that their
 * callbacks queue. */
static unsigned
cancel_queued (struct engine *e)
{
  struct req *r;
  unsigned n = 0;

  while ((r = queue_pop (&e->queued)) != NULL) {
    finish (e, r, -ECANCELED);
    n++;
  }
  return n;
}

/* ---- Synchronous backend: requests run one at a time when waited for,
 * each callback right after its request. */

static int
sync_xfer (struct req *r)
{
  ssize_t n;

  switch (r->op) {
  case OP_READ:
    n = pread (r->fd, r->buf + r->done, r->len - r->done, r->off + r->done);
    break;
  case OP_WRITE:
    n = pwrite (r->fd, r->buf + r->done, r->len - r->done, r->off + r->done);
    break;
  default:
    n = fsync (r->fd);
    break;
  }
  return n < 0 ? -errno : (int) n;
}

static unsigned
sync_run_one (struct engine *e)
{
  struct req *r = queue_pop (&e->queued);
  int res;

  if (!r)
    return 0;
  while (!progress (e, r, sync_xfer (r), &res))
    ;
  finish (e, r, res);
  return 1;
}

/* ---- io_uring backend. */

static int
ring_error (int r, const char *what)
{
  return set_error (-r, "I/O engine: %s: %s", what, strerror (-r));
}

static void
uring_prep_one (struct io_uring_sqe *sqe, struct req *r)
{
  char *buf = r->buf + r->done;
  unsigned len = r->len - r->done;
  uint64_t off = r->off + r->done;

  switch (r->op) {
  case OP_READ:
    if (r->buf_index >= 0)
      io_uring_prep_read_fixed (sqe, r->fd, buf, len, off, r->buf_index);
    else
      io_uring_prep_read (sqe, r->fd, buf, len, off);
    break;
  case OP_WRITE:
    if (r->buf_index >= 0)
      io_uring_prep_write_fixed (sqe, r->fd, buf, len, off, r->buf_index);
    else
      io_uring_prep_write (sqe, r->fd, buf, len, off);
    break;
  default:
    io_uring_prep_fsync (sqe, r->fd, 0);
    break;
  }
  io_uring_sqe_set_data (sqe, r);
}

/* Move queued requests into submission entries. The ring has an entry per
 * request plus one for a cancel, so it cannot run out; should it, the rest
 * stay queued for the next call. While cancelling, the wait loop cancels
 * what is queued instead. */
static void
uring_prep (struct engine *e)
{
  struct io_uring_sqe *sqe;

  if (e->cancelling)
    return;
  while (e->queued.head && (sqe = io_uring_get_sqe (&e->ring)) != NULL)
    uring_prep_one (sqe, queue_pop (&e->queued));
}

/* EBUSY/EAGAIN: the kernel is short of resources right now; the entries
 * stay in the ring and go with the next submit. */
static int
uring_submit (struct engine *e)
{
  int r;

  uring_prep (e);
  if (io_uring_sq_ready (&e->ring) == 0)
    return 0;
  do
    r = io_uring_submit (&e->ring);
  while (r == -EINTR);
  if (r < 0 && r != -EAGAIN && r != -EBUSY)
    return ring_error (r, "io_uring_submit");
  return 0;
}

static unsigned
uring_reap (struct engine *e)
{
  struct io_uring_cqe *cqe;
  unsigned n = 0;

  while (io_uring_peek_cqe (&e->ring, &cqe) == 0) {
    struct req *r = io_uring_cqe_get_data (cqe);
    int res = cqe->res, result;

    io_uring_cqe_seen (&e->ring, cqe);
    if (r == NULL)              /* the cancel request itself */
      continue;
    if (progress (e, r, res, &result)) {
      finish (e, r, result);
      n++;
    }
    else
      queue_push (&e->queued, r);
  }
  return n;
}

static int
uring_block (struct engine *e)
{
  int r;

  uring_prep (e);
  r = io_uring_submit_and_wait (&e->ring, 1);
  if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME)
    return ring_error (r, "io_uring_enter");
  return 0;
}

/* Started requests on regular files mostly cannot be cut short, but those
 * blocked (pipes, devices, network filesystems) can; an old kernel without
 * CANCEL_ANY answers -EINVAL, which is ignored like any cancel result. */
static void
uring_cancel_started (struct engine *e)
{
  struct io_uring_sqe *sqe = io_uring_get_sqe (&e->ring);

  if (sqe) {
    io_uring_prep_cancel64 (sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data (sqe, NULL);
  }
}

static int
uring_register_pool (struct engine *e)
{
  struct iovec *iov;
  unsigned i;
  int r;

  if (e->nbufs == 0 || e->nbufs > 16384 || e->stride > ENGINE_MAX_LEN)
    return -EINVAL;
  iov = calloc (e->nbufs, sizeof *iov);
  if (!iov)
    return -ENOMEM;
  for (i = 0; i < e->nbufs; i++) {
    iov[i].iov_base = e->pool + (size_t) i * e->stride;
    iov[i].iov_len = e->stride;
  }
  r = io_uring_register_buffers (&e->ring, iov, e->nbufs);
  free (iov);
  return r;
}

/* Failure here is not an error: the caller falls back to the sync backend.
 * Registering the pool may fail too (RLIMIT_MEMLOCK); plain reads then. */
static bool
uring_setup (struct engine *e, unsigned flags)
{
  struct io_uring_params p;

  memset (&p, 0, sizeof p);
  /* Completions are reaped when we wait, so no need to be interrupted. */
  p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  if (io_uring_queue_init_params (e->depth + 1, &e->ring, &p) < 0) {
    memset (&p, 0, sizeof p);
    if (io_uring_queue_init_params (e->depth + 1, &e->ring, &p) < 0)
      return false;
  }
  if (!(flags & ENGINE_NO_FIXED) && uring_register_pool (e) == 0)
    e->fixed = true;
  return true;
}

/* ---- Common part. */

/* Until min_complete callbacks ran or nothing is in flight. */
static int
wait_loop (struct engine *e, unsigned min_complete)
{
  unsigned n = 0;
  int r = 0;

  /* Nothing is ever ready in the sync backend without running it. */
  if (!e->uring && min_complete == 0)
    min_complete = 1;
  e->waiting = true;
  for (;;) {
    if (e->uring)
      n += uring_reap (e);
    if (e->cancelling)
      n += cancel_queued (e);
    if (n >= min_complete || e->inflight == 0)
      break;
    if (e->uring) {
      if ((r = uring_block (e)) < 0)
        break;
    }
    else if (sync_run_one (e))
      n++;
    else
      break;                    /* cannot happen: inflight counts the queue */
  }
  e->waiting = false;
  if (r == 0 && !e->cancelling)
    r = engine_submit (e);
  return r < 0 ? r : (int) MIN (n, (unsigned) INT_MAX);
}

static int
check_not_in_callback (const struct engine *e, const char *what)
{
  if (e->waiting)
    return set_error (EDEADLK, "I/O engine: %s called from a callback", what);
  return 0;
}

/* The pool's memory, page-aligned as O_DIRECT needs (ENGINE_ALIGN). A
 * pool of whole huge pages is placed on a huge page boundary and asked to
 * be backed by them: a job's first touch of its buffers (or registering
 * them) then faults 8 pages instead of 4096, which on a VM whose fresh
 * memory the host has to supply took 6.5 ms for 16 MiB of small pages
 * and 1.5 ms of huge ones (64-layer flatten: 45 -> 35 ms). A huge page
 * the host has taken back costs more to fault in (tens of ms at worst
 * here), and where memory is fragmented the kernel may compact for one;
 * both bounded, and it falls back to small pages. Without transparent
 * huge pages the advice is ignored. NULL (errno set) on failure. */
static void *
pool_map (size_t len)
{
  const size_t huge = POOL_HUGE_PAGE;
  size_t maplen, head;
  char *p;

  if (len % huge != 0 || ADD_OVERFLOW (len, huge, &maplen))
    maplen = len;
  p = mmap (NULL, maplen, PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  if (maplen == len)
    return p;
  head = ROUND_UP ((uintptr_t) p, (uintptr_t) huge) - (uintptr_t) p;
  if (head)
    munmap (p, head);
  if (huge - head)
    munmap (p + head + len, huge - head);
  p += head;
#ifdef MADV_HUGEPAGE
  (void) madvise (p, len, MADV_HUGEPAGE);
#endif
  return p;
}

static int
pool_new (struct engine *e, size_t buf_size, unsigned nbufs)
{
  unsigned i;
  void *p;

  e->buf_size = buf_size;
  e->stride = ROUND_UP (buf_size, (size_t) ENGINE_ALIGN);
  if (nbufs == 0)
    return 0;
  if (buf_size == 0 || e->stride < buf_size
      || MUL_OVERFLOW (e->stride, (size_t) nbufs, &e->pool_len))
    return set_error (EINVAL, "I/O engine: bad buffer pool size %zu x %u",
                      buf_size, nbufs);
  e->free_bufs = malloc (nbufs * sizeof *e->free_bufs);
  if (!e->free_bufs)
    return set_error (ENOMEM, "I/O engine: %s", strerror (ENOMEM));
  if ((p = pool_map (e->pool_len)) == NULL)
    return set_error (errno, "I/O engine: cannot map a %zu byte buffer pool: %s",
                      e->pool_len, strerror (errno));
  e->pool = p;
  e->nbufs = e->nfree_bufs = nbufs;
  for (i = 0; i < nbufs; i++)   /* lowest index on top: first use in order */
    e->free_bufs[i] = nbufs - 1 - i;
  return 0;
}

int
engine_new (unsigned depth, size_t buf_size, unsigned nbufs, unsigned flags,
            struct engine **out)
{
  struct engine *e;
  unsigned i;
  int r;

  if (depth == 0 || depth > ENGINE_MAX_DEPTH)
    return set_error (EINVAL, "I/O engine: depth %u out of range 1..%u",
                      depth, ENGINE_MAX_DEPTH);
  e = calloc (1, sizeof *e);
  if (!e || !(e->reqs = calloc (depth, sizeof *e->reqs))) {
    free (e);
    return set_error (ENOMEM, "I/O engine: %s", strerror (ENOMEM));
  }
  e->depth = depth;
  for (i = depth; i-- > 0;) {
    e->reqs[i].next = e->free_reqs;
    e->free_reqs = &e->reqs[i];
  }
  if ((r = pool_new (e, buf_size, nbufs)) < 0) {
    engine_free (e);
    return r;
  }
  if (!(flags & ENGINE_NO_URING))
    e->uring = uring_setup (e, flags);
  *out = e;
  return 0;
}

void
engine_free (struct engine *e)
{
  if (!e)
    return;
  /* The kernel may still be writing into the pool: wait before unmapping. */
  e->quiet = true;
  if (e->inflight)
    engine_cancel_all (e);
  if (e->uring)
    io_uring_queue_exit (&e->ring);
  if (e->pool)
    munmap (e->pool, e->pool_len);
  free (e->free_bufs);
  free (e->reqs);
  free (e);
}

const char *
engine_backend (const struct engine *e)
{
  return e->uring ? "io_uring" : "sync";
}

bool
engine_fixed_bufs (const struct engine *e)
{
  return e->fixed;
}

void *
engine_get_buf (struct engine *e)
{
  if (e->nfree_bufs == 0)
    return NULL;
  return e->pool + (size_t) e->free_bufs[--e->nfree_bufs] * e->stride;
}

void
engine_put_buf (struct engine *e, void *buf)
{
  size_t off = (char *) buf - e->pool;

  /* Memory not from the pool, or more puts than buffers: a caller bug that
   * must not corrupt the free stack. */
  if (!buf || (char *) buf < e->pool || off >= e->pool_len
      || off % e->stride || e->nfree_bufs == e->nbufs)
    return;
  e->free_bufs[e->nfree_bufs++] = off / e->stride;
}

size_t
engine_buf_size (const struct engine *e)
{
  return e->buf_size;
}

unsigned
engine_free_bufs (const struct engine *e)
{
  return e->nfree_bufs;
}

/* The registered buffer holding [buf, buf+len), or -1. */
static int
fixed_index (const struct engine *e, const char *buf, size_t len)
{
  size_t off, idx;

  if (!e->fixed || buf < e->pool || buf >= e->pool + e->pool_len)
    return -1;
  off = buf - e->pool;
  idx = off / e->stride;
  if (len > (idx + 1) * e->stride - off)
    return -1;
  return (int) idx;
}

static int
queue_req (struct engine *e, enum req_op op, int fd, int alt_fd, void *buf,
           size_t len, uint64_t off, engine_cb cb, void *opaque)
{
  struct req *r = e->free_reqs;

  if (len > ENGINE_MAX_LEN)
    return set_error (EINVAL, "I/O engine: request of %zu bytes is too large",
                      len);
  if (!r)
    return set_error (EAGAIN, "I/O engine: %u requests already in flight",
                      e->depth);
  e->free_reqs = r->next;
  e->inflight++;
  r->op = op;
  r->fd = fd;
  r->alt_fd = alt_fd != fd ? alt_fd : -1;
  r->buf = buf;
  r->len = (uint32_t) len;
  r->done = 0;
  r->off = off;
  r->buf_index = op == OP_FSYNC ? -1 : fixed_index (e, buf, len);
  r->cb = cb;
  r->opaque = opaque;
  if (!e->uring && e->waiting) {
    queue_insert_after (&e->queued, e->follow, r);
    e->follow = r;
  }
  else
    queue_push (&e->queued, r);
  return 0;
}

int
engine_read (struct engine *e, int fd, void *buf, size_t len, uint64_t off,
             engine_cb cb, void *opaque)
{
  return queue_req (e, OP_READ, fd, -1, buf, len, off, cb, opaque);
}

int
engine_write (struct engine *e, int fd, const void *buf, size_t len,
              uint64_t off, engine_cb cb, void *opaque)
{
  return queue_req (e, OP_WRITE, fd, -1, (void *) buf, len, off, cb, opaque);
}

int
engine_write_or (struct engine *e, int fd, int alt_fd, const void *buf,
                 size_t len, uint64_t off, engine_cb cb, void *opaque)
{
  return queue_req (e, OP_WRITE, fd, alt_fd, (void *) buf, len, off, cb,
                    opaque);
}

int
engine_fsync (struct engine *e, int fd, engine_cb cb, void *opaque)
{
  return queue_req (e, OP_FSYNC, fd, -1, NULL, 0, 0, cb, opaque);
}

/* The sync backend runs requests when they are waited for. */
int
engine_submit (struct engine *e)
{
  return e->uring ? uring_submit (e) : 0;
}

int
engine_wait (struct engine *e, unsigned min_complete)
{
  int r = check_not_in_callback (e, "engine_wait");

  return r < 0 ? r : wait_loop (e, min_complete);
}

unsigned
engine_fallbacks (const struct engine *e)
{
  return e->fallbacks;
}

unsigned
engine_inflight (const struct engine *e)
{
  return e->inflight;
}

unsigned
engine_slots (const struct engine *e)
{
  return e->depth - e->inflight;
}

int
engine_drain (struct engine *e)
{
  int r = check_not_in_callback (e, "engine_drain");

  if (r == 0 && e->inflight)
    r = wait_loop (e, UINT_MAX);
  return r < 0 ? r : 0;
}

int
engine_cancel_all (struct engine *e)
{
  int r = check_not_in_callback (e, "engine_cancel_all");

  if (r < 0)
    return r;
  e->cancelling = true;
  if (e->uring && e->inflight > 0) {
    uring_cancel_started (e);
    r = uring_submit (e);       /* just the cancel: see uring_prep */
  }
  if (r == 0)
    r = wait_loop (e, UINT_MAX);
  e->cancelling = false;
  return r < 0 ? r : 0;
}
