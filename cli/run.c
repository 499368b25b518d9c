/* Running a block job from the command line: job options, SIGINT/SIGTERM abort, progress display, exit status. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static struct qc_job *volatile running;
static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  (void) sig;
  interrupted = 1;
  if (running)
    qc_job_abort (running);
}

void
job_signals (void)
{
  struct sigaction sa = { .sa_handler = on_signal };

  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
}

static void
show (void *opaque, const struct qc_job_info *in)
{
  const int *mode = opaque;
  double secs = (double) in->elapsed_ns / 1e9;
  double rate = secs > 0 ? (double) in->cur / secs : 0;

  if (*mode == JOB_PROGRESS_JSON) {
    printf ("{\"cur\":%llu,\"end\":%llu,\"rate\":%.0f,\"elapsed\":%.3f}\n",
            (unsigned long long) in->cur, (unsigned long long) in->end, rate,
            secs);
    fflush (stdout);
  }
  else if (*mode == JOB_PROGRESS_BAR) {
    double pct = in->end ? 100.0 * (double) in->cur / (double) in->end : 100;
    int i, w = (int) (pct / 2.5);
    char bar[41];

    for (i = 0; i < 40; i++)
      bar[i] = i < w ? '#' : '.';
    bar[40] = '\0';
    fprintf (stderr, "\r[%s] %5.1f%% %.1f MiB/s", bar, pct, rate / 1048576);
    if (in->state != QC_JOB_RUNNING)
      fputc ('\n', stderr);
  }
}

/* Without a suffix MiB/s, as libvirt's bandwidth; with one bytes/s. */
static int
parse_bandwidth (const char *s, uint64_t *out)
{
  size_t n = strlen (s);
  uint64_t v;

  if (qc_parse_size (s, &v) < 0)
    return -1;
  if (n && s[n - 1] >= '0' && s[n - 1] <= '9') {
    if (v > UINT64_MAX >> 20)
      return -1;
    v <<= 20;
  }
  *out = v;
  return 0;
}

int
job_arg (const char *cmd, struct job_args *ja, int c, const char *arg)
{
  switch (c) {
  case 'p':
    ja->progress = JOB_PROGRESS_BAR;
    return 1;
  case JOB_OPT_BANDWIDTH:
    if (parse_bandwidth (arg, &ja->bandwidth) < 0) {
      usage_error (cmd, "--bandwidth: '%s' is not a rate", arg);
      return -1;
    }
    return 1;
  case JOB_OPT_PROGRESS:
    if (strcmp (arg, "json") != 0) {
      usage_error (cmd, "--progress=%s: only json", arg);
      return -1;
    }
    ja->progress = JOB_PROGRESS_JSON;
    return 1;
  case JOB_OPT_NO_URING:
    ja->flags |= QC_JOB_NO_URING;
    return 1;
  case JOB_OPT_DIRECT:
    arg = "direct";
    /* fall through */
  case JOB_OPT_CACHE: {
    static const struct { const char *name; unsigned flag; } modes[] = {
      { "auto", 0 }, { "direct-writes", QC_JOB_DIRECT_WRITES },
      { "buffered", QC_JOB_BUFFERED }, { "direct", QC_JOB_DIRECT },
    };
    size_t i;

    for (i = 0; i < sizeof modes / sizeof modes[0]; i++)
      if (strcmp (arg, modes[i].name) == 0)
        break;
    if (i == sizeof modes / sizeof modes[0]) {
      usage_error (cmd, "--cache=%s: auto, direct-writes, buffered or direct",
                   arg);
      return -1;
    }
    /* The last one given wins, as with other repeated options. */
    ja->flags &= ~(unsigned) (QC_JOB_DIRECT | QC_JOB_DIRECT_WRITES
                              | QC_JOB_BUFFERED);
    ja->flags |= modes[i].flag;
    return 1;
  }
  }
  return 0;
}

struct qc_open_opts *
job_open_opts (const struct chain_args *a)
{
  struct qc_open_opts *o = qc_open_opts_new ();
  unsigned i;

  if (o == NULL)
    return NULL;
  if ((a->format && qc_open_opts_set_format (o, a->format) < 0)
      || qc_open_opts_set_probe (o, a->probe) < 0
      || (a->max_depth && qc_open_opts_set_max_depth (o, a->max_depth) < 0))
    goto fail;
  for (i = 0; i < a->n_dirs; i++)
    if (qc_open_opts_add_allowed_dir (o, a->dirs[i]) < 0)
      goto fail;
  return o;
 fail:
  qc_open_opts_free (o);
  return NULL;
}

int
run_job (struct qc_job *job, const struct job_args *ja)
{
  int mode = ja->progress;
  int r;

  if (mode == JOB_PROGRESS_BAR && !isatty (2))
    mode = JOB_PROGRESS_NONE;
  if (job == NULL) {
    print_lib_error ();
    return interrupted ? 130 : 1;
  }
  running = job;
  if (interrupted)
    qc_job_abort (job);
  r = qc_job_run (job, mode ? show : NULL, &mode);
  running = NULL;
  if (r < 0) {
    struct qc_job_info in = { .struct_size = sizeof in };
    qc_job_info (job, &in);
    if (in.state == QC_JOB_ABORTED || interrupted) {
      qc_job_free (job);
      return 130;
    }
    print_lib_error ();
    qc_job_free (job);
    return 1;
  }
  if (ja->say_result && qc_job_result (job) && mode == JOB_PROGRESS_JSON) {
    fputs ("{\"result\":", stdout);
    json_print_string (stdout, qc_job_result (job));
    fputs ("}\n", stdout);
  }
  else if (ja->say_result && qc_job_result (job))
    printf ("%s\n", qc_job_result (job));
  else if (mode == JOB_PROGRESS_BAR && qc_job_result (job))
    fprintf (stderr, "%s\n", qc_job_result (job));
  qc_job_free (job);
  return 0;
}
