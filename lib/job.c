/* Block-job machinery: throttled steps, progress, abort, a pollable timerfd, blocking run. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "errors.h"
#include "job.h"

#define DEFAULT_MIN_REQUEST (16u * 1024)   /* <= 5% of 1 MiB/s */
#define DEFAULT_MAX_REQUEST (8u * 1024 * 1024)
#define PROGRESS_INTERVAL_NS (100u * 1000 * 1000)

/* Make the fd readable after ns nanoseconds (at least 1: 0 disarms). */
static void
arm (struct qc_job *j, uint64_t ns)
{
  struct itimerspec its = { 0 };

  if (ns == 0)
    ns = 1;
  its.it_value.tv_sec = (time_t) (ns / 1000000000u);
  its.it_value.tv_nsec = (long) (ns % 1000000000u);
  timerfd_settime (j->timer_fd, 0, &its, NULL);
}

static void
drain (struct qc_job *j)
{
  uint64_t expirations;

  if (read (j->timer_fd, &expirations, sizeof expirations) < 0) {
    /* EAGAIN: not expired yet; nothing to drain. */
  }
}

int
job_check_io_flags (unsigned flags)
{
  unsigned modes = flags & (QC_JOB_DIRECT | QC_JOB_DIRECT_WRITES
                            | QC_JOB_BUFFERED);

  if (modes & (modes - 1))
    return set_error (EINVAL, "direct, direct-writes and buffered I/O "
                      "exclude each other");
  return 0;
}

int
job_new (enum qc_job_type type, const struct job_ops *ops, void *priv,
         uint64_t bandwidth, struct qc_job **out)
{
  struct qc_job *j = calloc (1, sizeof *j);

  if (j == NULL) {
    if (ops->free)
      ops->free (priv);
    return set_error (ENOMEM, "out of memory");
  }
  j->timer_fd = timerfd_create (CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (j->timer_fd < 0) {
    int e = errno;
    free (j);
    if (ops->free)
      ops->free (priv);
    return set_error (e, "timerfd: %m");
  }
  j->type = type;
  j->state = QC_JOB_RUNNING;
  j->ops = ops;
  j->priv = priv;
  j->min_request = DEFAULT_MIN_REQUEST;
  j->max_request = DEFAULT_MAX_REQUEST;
  j->start_ns = throttle_now_ns ();
  throttle_init (&j->thr, bandwidth, j->start_ns);
  arm (j, 1);
  *out = j;
  return 0;
}

void
job_set_result (struct qc_job *j, const char *fmt, ...)
{
  va_list ap;
  char *s = NULL;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) < 0)
    s = NULL;
  va_end (ap);
  free (j->result);
  j->result = s;
}

/* Report the stored failure again as this thread's last error. */
static int
ended (struct qc_job *j)
{
  if (j->state == QC_JOB_DONE)
    return 1;
  set_error (j->err, "%s", j->errmsg ? j->errmsg : "job failed");
  errno = j->err;
  return -1;
}

/* The job has ended: let the type finish or roll back, keep the error. */
static int
end_job (struct qc_job *j, enum qc_job_state state, int r)
{
  int f = j->ops->finish ? j->ops->finish (j, state == QC_JOB_DONE) : 0;

  /* A failure found while stopping (a write that was in flight at an
   * abort) is reported, not hidden behind the abort. */
  if ((state == QC_JOB_DONE || state == QC_JOB_ABORTED) && f < 0) {
    state = QC_JOB_FAILED;
    r = f;
  }
  if (state == QC_JOB_ABORTED && r == 0)
    r = set_error (ECANCELED, "job aborted");
  j->state = state;
  j->end_ns = throttle_now_ns ();
  if (state != QC_JOB_DONE) {
    const char *msg = qc_get_error ();
    j->err = r < 0 ? -r : EIO;
    j->errmsg = strdup (msg ? msg : strerror (j->err));
  }
  arm (j, 1);                    /* let a poller see the end */
  return ended (j);
}

int
qc_job_step (struct qc_job *j)
{
  uint64_t now, wait, budget, moved = 0;
  int r;

  clear_error ();
  drain (j);
  if (j->state != QC_JOB_RUNNING)
    return ended (j);
  if (j->abort_requested)
    return end_job (j, QC_JOB_ABORTED, 0);
  now = throttle_now_ns ();
  wait = throttle_wait (&j->thr, now);
  if (wait) {
    arm (j, wait);
    return 0;
  }
  budget = throttle_max_request (&j->thr, j->min_request, j->max_request);
  r = j->ops->step (j, budget, &moved);
  throttle_charge (&j->thr, moved, throttle_now_ns ());
  if (r < 0)
    return end_job (j, QC_JOB_FAILED, r);
  if (r > 0)
    return end_job (j, QC_JOB_DONE, 0);
  arm (j, throttle_wait (&j->thr, throttle_now_ns ()));
  return 0;
}

int
qc_job_get_fd (struct qc_job *j)
{
  return j->timer_fd;
}

int
qc_job_info (struct qc_job *j, struct qc_job_info *info)
{
  struct qc_job_info in = { .struct_size = sizeof in };
  uint64_t until = j->state == QC_JOB_RUNNING ? throttle_now_ns () : j->end_ns;
  uint32_t size = info->struct_size;

  in.type = j->type;
  in.state = j->state;
  in.cur = j->cur;
  in.end = j->end;
  in.bandwidth = j->thr.rate;
  in.elapsed_ns = until - j->start_ns;
  memcpy ((char *) info + sizeof size, (char *) &in + sizeof size,
          (size < sizeof in ? size : sizeof in) - sizeof size);
  return 0;
}

int
qc_job_set_speed (struct qc_job *j, uint64_t bandwidth)
{
  throttle_set_rate (&j->thr, bandwidth, throttle_now_ns ());
  if (j->state == QC_JOB_RUNNING)
    arm (j, 1);
  return 0;
}

/* Only sets a flag: safe from a signal handler. */
int
qc_job_abort (struct qc_job *j)
{
  j->abort_requested = 1;
  return 0;
}

int
qc_job_run (struct qc_job *j, qc_progress_cb cb, void *opaque)
{
  uint64_t last = 0;
  int r;

  for (;;) {
    struct pollfd pfd = { .fd = j->timer_fd, .events = POLLIN };
    struct qc_job_info info = { .struct_size = sizeof info };
    uint64_t now;

    r = qc_job_step (j);
    now = throttle_now_ns ();
    if (cb && (r != 0 || now - last >= PROGRESS_INTERVAL_NS)) {
      qc_job_info (j, &info);
      cb (opaque, &info);
      last = now;
    }
    if (r > 0)
      return 0;
    if (r < 0)
      return -1;
    /* Throttled: sleep until the timer says the next step may go, but
     * wake for an abort within a bounded time. */
    if (poll (&pfd, 1, 100) < 0 && errno != EINTR)
      return public_error (set_error (errno, "poll: %m"));
  }
}

const char *
qc_job_result (struct qc_job *j)
{
  return j->result;
}

void
qc_job_free (struct qc_job *j)
{
  if (j == NULL)
    return;
  if (j->state == QC_JOB_RUNNING) {
    /* Freed mid-job: end it cleanly, as an abort. */
    j->abort_requested = 1;
    qc_job_step (j);
  }
  if (j->ops->free)
    j->ops->free (j->priv);
  close (j->timer_fd);
  free (j->result);
  free (j->errmsg);
  free (j);
}
