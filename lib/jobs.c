/* Block jobs: the API surface, bodies pending. */
#include <config.h>

#include <errno.h>
#include <stddef.h>

#include "errors.h"
#include "internal.h"

/*
 * The copy core and its four jobs are the next piece of work; until they
 * land these entry points say so plainly rather than pretending.
 */
static int
pending (const char *what)
{
  return public_error (set_error (ENOTSUP, "%s is not implemented in this "
                                  "version of qchain", what));
}

struct qc_job *
qc_commit_start (const char *active, const char *base, const char *top,
                 uint64_t bandwidth, unsigned flags,
                 const struct qc_open_opts *opts)
{
  clear_error ();
  pending ("commit");
  return NULL;
}

struct qc_job *
qc_copy_start (const char *src, const char *dest, const char *dest_options,
               uint64_t bandwidth, unsigned flags,
               const struct qc_open_opts *opts)
{
  clear_error ();
  pending ("copy");
  return NULL;
}

struct qc_job *
qc_pull_start (const char *image, const char *base, uint64_t bandwidth,
               unsigned flags, const struct qc_open_opts *opts)
{
  clear_error ();
  pending ("pull");
  return NULL;
}

struct qc_job *
qc_rebase_start (const char *image, const char *new_base,
                 const char *new_base_format, uint64_t bandwidth,
                 unsigned flags, const struct qc_open_opts *opts)
{
  clear_error ();
  pending ("rebase");
  return NULL;
}

/* No job can be started yet, so no handle reaches these. */
int qc_job_info (struct qc_job *job, struct qc_job_info *info) { return pending ("jobs"); }
int qc_job_set_speed (struct qc_job *job, uint64_t bw) { return pending ("jobs"); }
int qc_job_abort (struct qc_job *job) { return pending ("jobs"); }
int qc_job_run (struct qc_job *job, qc_progress_cb cb, void *opaque) { return pending ("jobs"); }
int qc_job_get_fd (struct qc_job *job) { return pending ("jobs"); }
int qc_job_step (struct qc_job *job) { return pending ("jobs"); }
const char *qc_job_result (struct qc_job *job) { return NULL; }
void qc_job_free (struct qc_job *job) { }
