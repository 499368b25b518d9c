/* Start functions of the four block jobs: the copy core they run on is pending. */
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
