/* qchain copy: libvirt's block copy of a chain's guest view into DEST, with progress and abort. */
#include <config.h>

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char copy_help[] =
  "Usage: qchain copy [--shallow] [--raw | -O FMT] [--reuse-existing] [-o OPTS]\n"
  "                   [--compress[=zlib|zstd]] [--bandwidth R]\n"
  "                   [-p | --progress=json] [--no-uring] [-f FMT] SRC DEST\n"
  "Copy the guest view of SRC's chain into DEST (libvirt's block copy).\n"
  "By default DEST is new, in SRC's format, with no backing file. A new DEST\n"
  "is written under a temporary name in its directory and renamed when done.\n\n"
  "Options:\n"
  "  --shallow            copy only SRC's own layer; DEST names SRC's backing\n"
  "                       file (a name that resolves from DEST's directory)\n"
  "  --raw, -O raw        DEST is raw (flattened)\n"
  "  -O qcow2             DEST is qcow2, also from a raw SRC (default: SRC's\n"
  "                       format)\n"
  "  --reuse-existing     write into the existing DEST: it must read as\n"
  "                       zeroes, or with --shallow hold SRC's backing view;\n"
  "                       a DEST without qcow2 magic needs --raw\n"
  "  -o OPTS              creation options of a new qcow2 DEST, as qemu-img:\n"
  "                       compat=, cluster_size=, refcount_bits=,\n"
  "                       extended_l2=, compression_type=; default: SRC's\n"
  "                       cluster size, compat and extended_l2\n"
  "  --compress[=zlib|zstd]  write compressed clusters (default zlib)\n"
  "  --bandwidth R        limit to R MiB/s; with a suffix (K, M, G) bytes/s\n"
  "  -p                   progress bar on a terminal (stderr)\n"
  "  --progress=json      one JSON object per line on stdout:\n"
  "                       {\"cur\":N,\"end\":N,\"rate\":N,\"elapsed\":S}\n"
  "  --no-uring           use pread/pwrite instead of io_uring\n"
  CHAIN_OPTS_HELP;

enum { OPT_SHALLOW = 0x200, OPT_RAW, OPT_REUSE, OPT_COMPRESS, OPT_BW,
       OPT_PROGRESS, OPT_NO_URING };

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

struct progress {
  int mode;                      /* 0 none, 1 bar, 2 json */
};

static void
show (void *opaque, const struct qc_job_info *in)
{
  const struct progress *p = opaque;
  double secs = (double) in->elapsed_ns / 1e9;
  double rate = secs > 0 ? (double) in->cur / secs : 0;

  if (p->mode == 2) {
    printf ("{\"cur\":%llu,\"end\":%llu,\"rate\":%.0f,\"elapsed\":%.3f}\n",
            (unsigned long long) in->cur, (unsigned long long) in->end, rate,
            secs);
    fflush (stdout);
  }
  else if (p->mode == 1) {
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

static int
parse_args (int argc, char **argv, struct chain_args *ca, unsigned *flags,
            const char **options, uint64_t *bw, struct progress *pr,
            bool *want_qcow2)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "shallow", no_argument, NULL, OPT_SHALLOW },
    { "raw", no_argument, NULL, OPT_RAW },
    { "reuse-existing", no_argument, NULL, OPT_REUSE },
    { "compress", optional_argument, NULL, OPT_COMPRESS },
    { "bandwidth", required_argument, NULL, OPT_BW },
    { "progress", required_argument, NULL, OPT_PROGRESS },
    { "no-uring", no_argument, NULL, OPT_NO_URING },
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:O:o:p", longopts, NULL)) != -1) {
    if ((r = chain_arg ("copy", ca, c, optarg)) != 0) {
      if (r < 0)
        return -1;
      continue;
    }
    switch (c) {
    case 'h': fputs (copy_help, stdout); exit (0);
    case OPT_SHALLOW: *flags |= QC_COPY_SHALLOW; break;
    case OPT_RAW: *flags |= QC_COPY_RAW; break;
    case OPT_REUSE: *flags |= QC_COPY_REUSE_EXT; break;
    case OPT_NO_URING: *flags |= QC_JOB_NO_URING; break;
    case 'o': *options = optarg; break;
    case 'p': pr->mode = 1; break;
    case 'O':
      if (check_format_arg ("copy", "-O", optarg) < 0)
        return -1;
      if (strcmp (optarg, "raw") == 0)
        *flags |= QC_COPY_RAW;
      *want_qcow2 = strcmp (optarg, "qcow2") == 0;
      break;
    case OPT_COMPRESS:
      if (optarg == NULL || strcmp (optarg, "zlib") == 0)
        *flags |= QC_COPY_COMPRESS_ZLIB;
      else if (strcmp (optarg, "zstd") == 0)
        *flags |= QC_COPY_COMPRESS_ZSTD;
      else {
        usage_error ("copy", "--compress=%s: zlib or zstd", optarg);
        return -1;
      }
      break;
    case OPT_BW:
      if (parse_bandwidth (optarg, bw) < 0) {
        usage_error ("copy", "--bandwidth: '%s' is not a rate", optarg);
        return -1;
      }
      break;
    case OPT_PROGRESS:
      if (strcmp (optarg, "json") != 0) {
        usage_error ("copy", "--progress=%s: only json", optarg);
        return -1;
      }
      pr->mode = 2;
      break;
    default:
      if (optopt == 'O')
        usage_error ("copy", "option -O needs a value");
      else
        bad_option ("copy", argv);
      return -1;
    }
  }
  if (optind != argc - 2) {
    usage_error ("copy", "expected SRC DEST");
    return -1;
  }
  return 0;
}

static struct qc_open_opts *
make_opts (const struct chain_args *a)
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
cmd_copy (int argc, char **argv)
{
  struct chain_args ca = { 0 };
  struct progress pr = { 0 };
  struct sigaction sa = { .sa_handler = on_signal };
  const char *options = NULL;
  struct qc_open_opts *o;
  struct qc_job *job;
  unsigned flags = 0;
  uint64_t bw = 0;
  bool want_qcow2 = false;
  int r;

  if (parse_args (argc, argv, &ca, &flags, &options, &bw, &pr, &want_qcow2) < 0)
    return EXIT_USAGE;
  if (want_qcow2 && (flags & QC_COPY_RAW)) {
    usage_error ("copy", "--raw and -O qcow2 contradict each other");
    return EXIT_USAGE;
  }
  if (want_qcow2)
    flags |= QC_COPY_QCOW2;
  if (pr.mode == 1 && !isatty (2))
    pr.mode = 0;
  if ((o = make_opts (&ca)) == NULL) {
    print_lib_error ();
    return 1;
  }
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  job = qc_copy_start (argv[optind], argv[optind + 1], options, bw, flags, o);
  qc_open_opts_free (o);
  if (job == NULL) {
    print_lib_error ();
    return interrupted ? 130 : 1;
  }
  running = job;
  if (interrupted)
    qc_job_abort (job);
  r = qc_job_run (job, pr.mode ? show : NULL, &pr);
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
  if (pr.mode == 1 && qc_job_result (job))
    fprintf (stderr, "%s\n", qc_job_result (job));
  qc_job_free (job);
  return 0;
}
