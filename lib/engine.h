/* Asynchronous I/O engine for the copy core: io_uring with a pread/pwrite fallback, a buffer pool. */
#ifndef QC_ENGINE_H
#define QC_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Usage: queue requests (engine_read/write/fsync), engine_submit, then
 * engine_wait to reap completions; each request's callback runs exactly once,
 * from engine_wait (or engine_drain/engine_cancel_all), never from the
 * function that queued it.
 *
 * Callback result: for reads the bytes read, which is less than asked only at
 * end of file (the caller zero-fills the rest); for writes the full length;
 * for fsync 0; otherwise -errno. Short transfers in the middle, EINTR and
 * EAGAIN are retried internally, so a callback never sees them.
 *
 * Depth: at most `depth` requests exist at once, counting queued,
 * submitted and resubmitted ones. Queueing beyond that does NOT wait: it
 * returns -EAGAIN, so callers check engine_slots() first (or wait). A
 * request's slot is released before its callback runs, so a callback can
 * always queue one follow-up request (a read's callback queueing the write).
 *
 * Callbacks may queue requests and call engine_submit, but must not call
 * engine_wait, engine_drain, engine_cancel_all or engine_free (-EDEADLK).
 *
 * The engine is single-threaded: one thread uses it at a time.
 */

struct engine;

/* res: bytes transferred (reads may be short at EOF only), 0 for fsync, or -errno. */
typedef void (*engine_cb) (void *opaque, int res);

#define ENGINE_NO_URING (1u << 0)   /* force the synchronous backend */
/* Pool buffers usable with O_DIRECT fds. Every pool buffer is ENGINE_ALIGN
 * aligned anyway; the flag states the intent and keeps callers portable
 * should that cost something one day. The caller opens the fds O_DIRECT and
 * keeps offsets and lengths aligned (a short read at EOF is handled). */
#define ENGINE_DIRECT   (1u << 1)
#define ENGINE_NO_FIXED (1u << 2)   /* do not register the pool with io_uring */

#define ENGINE_ALIGN 4096u          /* alignment of every pool buffer */
#define ENGINE_MAX_DEPTH 4096u
#define ENGINE_MAX_LEN 0x40000000u  /* largest single request (1 GiB) */

/* A new engine with room for depth (1..ENGINE_MAX_DEPTH) requests and a pool
 * of nbufs buffers of buf_size bytes (nbufs may be 0: the caller brings its
 * own buffers). Falls back to the sync backend when io_uring is unusable. */
int engine_new (unsigned depth, size_t buf_size, unsigned nbufs,
                unsigned flags, struct engine **out);
/* Waits for requests in flight (their callbacks do not run), then frees. */
void engine_free (struct engine *e);

/* "io_uring" or "sync". */
const char *engine_backend (const struct engine *e);
/* True when the pool is registered and requests on it use read/write_fixed. */
bool engine_fixed_bufs (const struct engine *e);

/* A free pool buffer (ENGINE_ALIGN-aligned, engine_buf_size bytes), or NULL
 * when all are taken: wait for completions that return one. */
void *engine_get_buf (struct engine *e);
void engine_put_buf (struct engine *e, void *buf);
size_t engine_buf_size (const struct engine *e);
unsigned engine_free_bufs (const struct engine *e);

/* Queue a request; 0, or -EAGAIN when depth requests exist, -EINVAL for
 * len > ENGINE_MAX_LEN. buf may be a pool buffer or any other memory that
 * stays valid until the callback. */
int engine_read (struct engine *e, int fd, void *buf, size_t len,
                 uint64_t off, engine_cb cb, void *opaque);
int engine_write (struct engine *e, int fd, const void *buf, size_t len,
                  uint64_t off, engine_cb cb, void *opaque);
/* engine_write on fd (opened O_DIRECT), done again on alt_fd (the same
 * file without O_DIRECT) if fd refuses it with EINVAL, as a file system
 * may for a direct write it cannot take; the callback sees the result of
 * the write that was done. */
int engine_write_or (struct engine *e, int fd, int alt_fd, const void *buf,
                     size_t len, uint64_t off, engine_cb cb, void *opaque);
/* How many such writes were redone on their alt_fd so far: a caller
 * seeing one stops giving the engine direct writes. */
unsigned engine_fallbacks (const struct engine *e);
/* Completes after every write that completed before it was queued is
 * durable; order it after writes by waiting for them first. */
int engine_fsync (struct engine *e, int fd, engine_cb cb, void *opaque);

/* Start everything queued (io_uring; the sync backend runs requests in
 * engine_wait). 0 or -errno. */
int engine_submit (struct engine *e);
/* Submit what is queued, then reap completions until at least min_complete
 * callbacks ran (counting those of requests queued by callbacks) or nothing
 * is in flight; 0 takes what is ready without blocking. Anything queued by
 * the callbacks is submitted before returning. Returns the number of
 * callbacks run, or -errno when the ring itself fails (request errors go to
 * the callbacks).
 * Sync backend: requests run here, one at a time, each followed by its
 * callback, and requests a callback queues run next (a read's data is
 * written while still in the cache); min_complete 0 runs one, since
 * nothing is ever ready there without running it. */
int engine_wait (struct engine *e, unsigned min_complete);
/* Requests queued or in flight whose callbacks have not run yet. */
unsigned engine_inflight (const struct engine *e);
/* Room left for new requests: depth - engine_inflight. */
unsigned engine_slots (const struct engine *e);
/* Wait until nothing is in flight (a barrier for ordering writes). */
int engine_drain (struct engine *e);
/* Abort: requests not yet started complete with -ECANCELED, started ones
 * are cancelled where the kernel can or awaited (bounded by the requests in
 * flight); anything queued meanwhile by callbacks is cancelled too. Leaves
 * nothing in flight. 0 or -errno. */
int engine_cancel_all (struct engine *e);

#endif
