/* Internal block-job machinery: state, throttled steps, progress, abort, pollable fd. */
#ifndef QC_JOB_H
#define QC_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "qchain.h"
#include "throttle.h"

struct qc_job;

/* What a job type provides; the machinery calls these, never twice at once. */
struct job_ops {
  /* Do a bounded slice of work moving at most `budget` bytes; add the
   * bytes moved to *moved and progress to j->cur (j->end may grow while
   * planning). Returns 1 when the work is complete, 0 when more remains,
   * -errno (after set_error) on failure. */
  int (*step) (struct qc_job *j, uint64_t budget, uint64_t *moved);
  /* Called once when the job ends: ok = the work completed. Finish the
   * job's pointer switches, or leave every image consistent. */
  int (*finish) (struct qc_job *j, bool ok);
  void (*free) (void *priv);
};

struct qc_job {
  enum qc_job_type type;
  enum qc_job_state state;
  uint64_t cur, end;
  struct throttle thr;
  volatile sig_atomic_t abort_requested;
  int timer_fd;                  /* readable when qc_job_step has work */
  uint64_t start_ns, end_ns;
  uint64_t min_request;          /* smallest useful step (throttled) */
  uint64_t max_request;          /* largest step */
  const struct job_ops *ops;
  void *priv;
  char *result;                  /* qc_job_result */
  int err;                       /* errno of the failure */
  char *errmsg;                  /* message of the failure */
};

/* From this many bytes to move on, a job's writes bypass the page cache
 * unless told otherwise: filling the cache costs more than the disk (a
 * 2 GiB deep copy: 1.1 s direct, 0.8-5 s through the cache on a VM whose
 * free memory the host takes back), and a job this big would evict what
 * others cache. Smaller jobs write scattered small pieces, which the
 * cache gathers better (64-layer commit, 30 MiB: 45 ms cached, 60 ms
 * direct). */
#define JOB_DIRECT_AUTO_MIN (64ull << 20)
/* Into a file the job created, from this many: its first fdatasync writes
 * back everything cached at once, where direct writes have put the data
 * on disk already (64-layer flatten, 31 MiB: 45 ms cached, 35 ms direct;
 * 8 MiB and less measured the same either way). */
#define JOB_DIRECT_NEW_MIN (16ull << 20)

/* The size from which a job writing a new file (fresh) or an existing
 * one goes past the page cache by default. */
static inline uint64_t
job_direct_min (bool fresh)
{
  return fresh ? JOB_DIRECT_NEW_MIN : JOB_DIRECT_AUTO_MIN;
}

/* Whether a job that will move `bytes` writes past the page cache. */
static inline bool
job_direct_writes (unsigned flags, uint64_t bytes, bool fresh)
{
  if (flags & (QC_JOB_DIRECT | QC_JOB_DIRECT_WRITES))
    return true;
  return !(flags & QC_JOB_BUFFERED) && bytes >= job_direct_min (fresh);
}

/* 0, or -EINVAL (after set_error) for more than one I/O mode in flags. */
int job_check_io_flags (unsigned flags);

/* A new running job; takes ownership of priv (freed by ops->free). */
int job_new (enum qc_job_type type, const struct job_ops *ops, void *priv,
             uint64_t bandwidth, struct qc_job **out);
/* Set the job's result note (printf-style). */
void job_set_result (struct qc_job *j, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#endif
