/* Test helper: a copy driven step by step through the public API, aborted after a given number of steps. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qchain.h"

/* step-abort SRC DEST STEPS [buffered|direct-writes|no-uring]: copy SRC
 * into the existing DEST (--reuse-existing), unthrottled, abort after
 * STEPS steps, run the job to its end. Exit 0 when it ended aborted with
 * part of the data moved, 1 otherwise (with why). */
int
main (int argc, char **argv)
{
  unsigned flags = QC_COPY_REUSE_EXT;
  struct qc_job_info info = { .struct_size = sizeof info };
  struct qc_job *j;
  int steps, r = 0;

  if (argc < 4 || (steps = atoi (argv[3])) < 1) {
    fprintf (stderr, "usage: step-abort SRC DEST STEPS [MODE]\n");
    return 2;
  }
  if (argc > 4 && strcmp (argv[4], "buffered") == 0)
    flags |= QC_JOB_BUFFERED;
  else if (argc > 4 && strcmp (argv[4], "direct-writes") == 0)
    flags |= QC_JOB_DIRECT_WRITES;
  else if (argc > 4 && strcmp (argv[4], "no-uring") == 0)
    flags |= QC_JOB_NO_URING;
  j = qc_copy_start (argv[1], argv[2], NULL, 0, flags, NULL);
  if (j == NULL) {
    fprintf (stderr, "step-abort: %s\n", qc_get_error ());
    return 1;
  }
  while (steps-- > 0 && (r = qc_job_step (j)) == 0)
    ;
  qc_job_info (j, &info);
  if (r != 0) {
    fprintf (stderr, "step-abort: the copy ended (%d) before the abort, "
             "%llu of %llu bytes\n", r, (unsigned long long) info.cur,
             (unsigned long long) info.end);
    qc_job_free (j);
    return 1;
  }
  qc_job_abort (j);
  while ((r = qc_job_step (j)) == 0)
    ;
  qc_job_info (j, &info);
  printf ("aborted at %llu of %llu bytes\n", (unsigned long long) info.cur,
          (unsigned long long) info.end);
  r = info.state == QC_JOB_ABORTED && info.cur > 0 ? 0 : 1;
  if (r)
    fprintf (stderr, "step-abort: state %d, %llu bytes moved: %s\n",
             (int) info.state, (unsigned long long) info.cur,
             qc_get_error () ? qc_get_error () : "");
  qc_job_free (j);
  return r;
}
