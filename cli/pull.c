/* qchain pull: libvirt's block pull, offline: an image takes in the layers above a base, then names the base. */
#include <config.h>

#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static const char pull_help[] =
  "Usage: qchain pull [--base B] [--bandwidth R] [-p | --progress=json]\n"
  "                   [--no-uring] [--cache=MODE] [-f FMT] IMAGE\n"
  "Copy into IMAGE what the layers between it and B hold (where IMAGE holds\n"
  "nothing itself), then make B IMAGE's backing file; without --base, pull\n"
  "the whole chain and leave IMAGE with no backing file. IMAGE's guest view\n"
  "does not change.\n\n"
  "Options:\n"
  "  --base B             a member of IMAGE's chain below it: @N (@1 is\n"
  "                       IMAGE's backing file), its name as written in the\n"
  "                       chain, or a path to the same file\n"
  JOB_OPTS_HELP
  CHAIN_OPTS_HELP;

enum { OPT_BASE = 0x200 };

static int
parse_args (int argc, char **argv, struct chain_args *ca, struct job_args *ja,
            const char **base)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "base", required_argument, NULL, OPT_BASE },
    JOB_LONG_OPTS,
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:p", longopts, NULL)) != -1) {
    if ((r = chain_arg ("pull", ca, c, optarg)) != 0
        || (r = job_arg ("pull", ja, c, optarg)) != 0) {
      if (r < 0)
        return -1;
      continue;
    }
    switch (c) {
    case 'h': fputs (pull_help, stdout); exit (0);
    case OPT_BASE:
      if (*optarg == '\0') {
        usage_error ("pull", "--base needs a chain member");
        return -1;
      }
      *base = optarg;
      break;
    default:
      bad_option ("pull", argv);
      return -1;
    }
  }
  if (optind != argc - 1) {
    usage_error ("pull", "expected one IMAGE");
    return -1;
  }
  return 0;
}

int
cmd_pull (int argc, char **argv)
{
  struct chain_args ca = { 0 };
  struct job_args ja = { 0 };
  const char *base = NULL;
  struct qc_open_opts *o;
  struct qc_job *job;

  if (parse_args (argc, argv, &ca, &ja, &base) < 0)
    return EXIT_USAGE;
  if ((o = job_open_opts (&ca)) == NULL) {
    print_lib_error ();
    return 1;
  }
  job_signals ();
  job = qc_pull_start (argv[optind], base, ja.bandwidth, ja.flags, o);
  qc_open_opts_free (o);
  return run_job (job, &ja);
}
