/* Unit tests for the block-job machinery with a counting job type. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "errors.h"
#include "job.h"

struct counter {
  uint64_t total;                /* bytes to "move" */
  int fail_at_step;              /* 0 = never */
  int steps;
  int finished;                  /* times finish ran */
  bool finish_ok;
};

static int
count_step (struct qc_job *j, uint64_t budget, uint64_t *moved)
{
  struct counter *c = j->priv;
  uint64_t n = c->total - j->cur < budget ? c->total - j->cur : budget;

  j->end = c->total;
  if (++c->steps == c->fail_at_step)
    return set_error (EIO, "x.qcow2: read error at step %d", c->steps);
  j->cur += n;
  *moved = n;
  return j->cur == c->total;
}

static int
count_finish (struct qc_job *j, bool ok)
{
  struct counter *c = j->priv;

  c->finished++;
  c->finish_ok = ok;
  if (ok)
    job_set_result (j, "moved %" PRIu64 " bytes", j->cur);
  return 0;
}

static const struct job_ops counter_ops = {
  .step = count_step,
  .finish = count_finish,
  .free = NULL,                  /* the tests own their counters */
};

static void
progress (void *opaque, const struct qc_job_info *info)
{
  uint64_t *last = opaque;

  assert_true (info->cur >= *last);     /* progress never goes back */
  assert_true (info->cur <= info->end);
  *last = info->cur;
}

static void
runs_to_completion (void **state)
{
  struct counter c = { .total = 100u << 20 };
  struct qc_job_info info = { .struct_size = sizeof info };
  struct qc_job *j;
  uint64_t last = 0;

  assert_int_equal (job_new (QC_JOB_COPY, &counter_ops, &c, 0, &j), 0);
  assert_int_equal (qc_job_run (j, progress, &last), 0);
  assert_int_equal (last, c.total);
  assert_int_equal (c.finished, 1);
  assert_true (c.finish_ok);
  qc_job_info (j, &info);
  assert_int_equal (info.state, QC_JOB_DONE);
  assert_int_equal (info.type, QC_JOB_COPY);
  assert_int_equal (info.cur, c.total);
  assert_string_equal (qc_job_result (j), "moved 104857600 bytes");
  /* stepping an ended job just says so */
  assert_int_equal (qc_job_step (j), 1);
  qc_job_free (j);
  assert_int_equal (c.finished, 1);
}

static void
abort_ends_with_ecanceled (void **state)
{
  struct counter c = { .total = 1u << 30 };
  struct qc_job *j;

  assert_int_equal (job_new (QC_JOB_COMMIT, &counter_ops, &c, 0, &j), 0);
  assert_int_equal (qc_job_step (j), 0);
  qc_job_abort (j);
  assert_int_equal (qc_job_step (j), -1);
  assert_int_equal (errno, ECANCELED);
  assert_int_equal (c.finished, 1);
  assert_false (c.finish_ok);
  assert_int_equal (qc_job_run (j, NULL, NULL), -1);
  assert_int_equal (qc_get_errno (), ECANCELED);
  qc_job_free (j);
  assert_int_equal (c.finished, 1);
}

static void
failure_keeps_its_message (void **state)
{
  struct counter c = { .total = 1u << 30, .fail_at_step = 3 };
  struct qc_job_info info = { .struct_size = sizeof info };
  struct qc_job *j;

  assert_int_equal (job_new (QC_JOB_PULL, &counter_ops, &c, 0, &j), 0);
  assert_int_equal (qc_job_run (j, NULL, NULL), -1);
  assert_int_equal (qc_get_errno (), EIO);
  assert_string_equal (qc_get_error (), "x.qcow2: read error at step 3");
  qc_job_info (j, &info);
  assert_int_equal (info.state, QC_JOB_FAILED);
  assert_false (c.finish_ok);
  /* asked again later, the same error */
  clear_error ();
  assert_int_equal (qc_job_step (j), -1);
  assert_string_equal (qc_get_error (), "x.qcow2: read error at step 3");
  qc_job_free (j);
}

static void
fd_drives_an_event_loop (void **state)
{
  struct counter c = { .total = 40u << 20 };
  struct qc_job *j;
  int r = 0, polls = 0;

  assert_int_equal (job_new (QC_JOB_REBASE, &counter_ops, &c, 0, &j), 0);
  while (r == 0) {
    struct pollfd pfd = { .fd = qc_job_get_fd (j), .events = POLLIN };
    assert_int_equal (poll (&pfd, 1, 5000), 1);   /* readable: work to do */
    polls++;
    r = qc_job_step (j);
  }
  assert_int_equal (r, 1);
  assert_true (polls >= 5);                      /* 8 MiB steps */
  qc_job_free (j);
}

static void
throttled_job_waits_and_speed_can_change (void **state)
{
  struct counter c = { .total = 1u << 30 };
  struct qc_job_info info = { .struct_size = sizeof info };
  struct pollfd pfd;
  struct qc_job *j;

  /* 1 MiB/s: the first step waits for its start slot (< 1/20 s), goes
   * when the fd says so, then the bucket is empty for ~1/20 s again */
  assert_int_equal (job_new (QC_JOB_COPY, &counter_ops, &c, 1u << 20, &j), 0);
  assert_int_equal (qc_job_step (j), 0);
  assert_int_equal (j->cur, 0);
  pfd = (struct pollfd) { .fd = qc_job_get_fd (j), .events = POLLIN };
  assert_int_equal (poll (&pfd, 1, 5000), 1);   /* ready within the slot */
  assert_int_equal (qc_job_step (j), 0);
  assert_int_equal (j->cur, (1u << 20) / 20);   /* a 20th of the rate */
  assert_int_equal (qc_job_step (j), 0);
  assert_int_equal (j->cur, (1u << 20) / 20);   /* had to wait */
  pfd = (struct pollfd) { .fd = qc_job_get_fd (j), .events = POLLIN };
  assert_int_equal (poll (&pfd, 1, 0), 0);      /* not ready yet */
  qc_job_set_speed (j, 0);
  qc_job_info (j, &info);
  assert_int_equal (info.bandwidth, 0);
  assert_int_equal (qc_job_run (j, NULL, NULL), 0);
  assert_int_equal (j->cur, c.total);
  qc_job_free (j);
}

static void
free_mid_job_finishes_it (void **state)
{
  struct counter c = { .total = 1u << 30 };
  struct qc_job *j;

  assert_int_equal (job_new (QC_JOB_COPY, &counter_ops, &c, 0, &j), 0);
  assert_int_equal (qc_job_step (j), 0);
  qc_job_free (j);
  assert_int_equal (c.finished, 1);
  assert_false (c.finish_ok);
}

/* The page-cache policy: told, or by the bytes a job moves. */
static void
io_modes (void **state)
{
  assert_false (job_direct_writes (0, JOB_DIRECT_AUTO_MIN - 1, false));
  assert_true (job_direct_writes (0, JOB_DIRECT_AUTO_MIN, false));
  /* A file the job created: from a smaller size. */
  assert_true (JOB_DIRECT_NEW_MIN < JOB_DIRECT_AUTO_MIN);
  assert_false (job_direct_writes (0, JOB_DIRECT_NEW_MIN - 1, true));
  assert_true (job_direct_writes (0, JOB_DIRECT_NEW_MIN, true));
  assert_false (job_direct_writes (0, JOB_DIRECT_NEW_MIN, false));
  assert_true (job_direct_writes (QC_JOB_DIRECT_WRITES, 0, false));
  assert_true (job_direct_writes (QC_JOB_DIRECT, 0, true));
  assert_false (job_direct_writes (QC_JOB_BUFFERED, UINT64_MAX, true));
  assert_int_equal (job_check_io_flags (QC_JOB_NO_URING | QC_JOB_BUFFERED), 0);
  assert_int_equal (job_check_io_flags (QC_JOB_DIRECT | QC_JOB_BUFFERED),
                    -EINVAL);
  assert_int_equal (job_check_io_flags (QC_JOB_DIRECT_WRITES | QC_JOB_DIRECT),
                    -EINVAL);
  /* ... and a job start refuses them. */
  assert_null (qc_pull_start ("never.qcow2", NULL, 0,
                              QC_JOB_DIRECT_WRITES | QC_JOB_BUFFERED, NULL));
  assert_int_equal (qc_get_errno (), EINVAL);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (runs_to_completion),
    cmocka_unit_test (abort_ends_with_ecanceled),
    cmocka_unit_test (failure_keeps_its_message),
    cmocka_unit_test (fd_drives_an_event_loop),
    cmocka_unit_test (throttled_job_waits_and_speed_can_change),
    cmocka_unit_test (free_mid_job_finishes_it),
    cmocka_unit_test (io_modes),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
