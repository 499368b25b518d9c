/* qchain rebase: give an image a new backing file, keeping its guest view unless --unsafe. */
#include <config.h>

#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static const char rebase_help[] =
  "Usage: qchain rebase [--unsafe] -b NEWBASE [-F FMT] [--bandwidth R]\n"
  "                     [-p | --progress=json] [--no-uring]\n"
  "                     [--cache=MODE] [-f FMT] IMAGE\n"
  "Make NEWBASE IMAGE's backing file (-b \"\": no backing file). By default\n"
  "IMAGE's guest view does not change: where the old and the new backing\n"
  "views differ, IMAGE first receives the old view's data; only then does\n"
  "its header name NEWBASE.\n\n"
  "Options:\n"
  "  -b NEWBASE           the new backing file, recorded as given; a relative\n"
  "                       name is relative to IMAGE's directory\n"
  "  -F FMT               NEWBASE's format (qcow2 or raw); default: qcow2 if\n"
  "                       it has the qcow2 magic, else raw\n"
  "  -u, --unsafe         only rewrite the backing name and format: the old\n"
  "                       backing file may be missing; the guest view\n"
  "                       changes unless NEWBASE reads as the old one did\n"
  JOB_OPTS_HELP
  CHAIN_OPTS_HELP;

enum { OPT_UNSAFE = 0x200 };

static int
parse_args (int argc, char **argv, struct chain_args *ca, struct job_args *ja,
            unsigned *flags, const char **base, const char **bfmt)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "unsafe", no_argument, NULL, OPT_UNSAFE },
    JOB_LONG_OPTS,
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "hub:F:f:p", longopts, NULL)) != -1) {
    if ((r = chain_arg ("rebase", ca, c, optarg)) != 0
        || (r = job_arg ("rebase", ja, c, optarg)) != 0) {
      if (r < 0)
        return -1;
      continue;
    }
    switch (c) {
    case 'h': fputs (rebase_help, stdout); exit (0);
    case 'u':
    case OPT_UNSAFE: *flags |= QC_REBASE_UNSAFE; break;
    case 'b': *base = optarg; break;
    case 'F':
      if (check_format_arg ("rebase", "-F", optarg) < 0)
        return -1;
      *bfmt = optarg;
      break;
    default:
      bad_option ("rebase", argv);
      return -1;
    }
  }
  if (*base == NULL) {
    usage_error ("rebase", "-b NEWBASE is required (-b \"\" for no backing "
                 "file)");
    return -1;
  }
  if (optind != argc - 1) {
    usage_error ("rebase", "expected one IMAGE");
    return -1;
  }
  return 0;
}

int
cmd_rebase (int argc, char **argv)
{
  struct chain_args ca = { 0 };
  struct job_args ja = { 0 };
  const char *base = NULL, *bfmt = NULL;
  struct qc_open_opts *o;
  struct qc_job *job;
  unsigned flags = 0;

  if (parse_args (argc, argv, &ca, &ja, &flags, &base, &bfmt) < 0)
    return EXIT_USAGE;
  if ((o = job_open_opts (&ca)) == NULL) {
    print_lib_error ();
    return 1;
  }
  job_signals ();
  job = qc_rebase_start (argv[optind], base, bfmt, ja.bandwidth,
                         flags | ja.flags, o);
  qc_open_opts_free (o);
  return run_job (job, &ja);
}
