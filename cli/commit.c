/* qchain commit: libvirt's block commit, offline: the layers from a top down to above a base merged into the base. */
#include <config.h>

#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static const char commit_help[] =
  "Usage: qchain commit [--top T] [--base B] [--shallow] [--delete]\n"
  "                     [--keep-active] [--force] [--bandwidth R]\n"
  "                     [-p | --progress=json] [--no-uring] [--cache=MODE]\n"
  "                     [-f FMT] ACTIVE\n"
  "Merge what T and the layers between T and B hold into B (default: T is\n"
  "ACTIVE, B the bottom of its chain). When T is below ACTIVE, the image\n"
  "above T is rewritten to name B once B is durable. ACTIVE's guest view\n"
  "never changes.\n\n"
  "Options:\n"
  "  --top T              the top layer to commit: @N (@0 is ACTIVE), its\n"
  "                       name as written in the chain, or a path to it\n"
  "  --base B             the layer to commit into (same forms)\n"
  "  --shallow            B is T's own backing file (not with --base)\n"
  "  --delete             unlink the images the commit made invalid\n"
  "  --keep-active        (T = ACTIVE) afterwards ACTIVE is empty and names\n"
  "                       B: chain B <- ACTIVE, same guest view; with\n"
  "                       --shallow this is qemu-img commit's default\n"
  "  --force              commit into a B other images in its directory use\n"
  JOB_OPTS_HELP
  CHAIN_OPTS_HELP;

enum { OPT_TOP = 0x200, OPT_BASE, OPT_SHALLOW, OPT_DELETE, OPT_KEEP,
       OPT_FORCE };

static int
member_arg (const char *opt, const char *arg, const char **out)
{
  if (*arg == '\0') {
    usage_error ("commit", "%s needs a chain member", opt);
    return -1;
  }
  *out = arg;
  return 0;
}

static int
parse_args (int argc, char **argv, struct chain_args *ca, struct job_args *ja,
            unsigned *flags, const char **top, const char **base)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "top", required_argument, NULL, OPT_TOP },
    { "base", required_argument, NULL, OPT_BASE },
    { "shallow", no_argument, NULL, OPT_SHALLOW },
    { "delete", no_argument, NULL, OPT_DELETE },
    { "keep-active", no_argument, NULL, OPT_KEEP },
    { "force", no_argument, NULL, OPT_FORCE },
    JOB_LONG_OPTS,
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:p", longopts, NULL)) != -1) {
    if ((r = chain_arg ("commit", ca, c, optarg)) != 0
        || (r = job_arg ("commit", ja, c, optarg)) != 0) {
      if (r < 0)
        return -1;
      continue;
    }
    switch (c) {
    case 'h': fputs (commit_help, stdout); exit (0);
    case OPT_TOP:
      if (member_arg ("--top", optarg, top) < 0)
        return -1;
      break;
    case OPT_BASE:
      if (member_arg ("--base", optarg, base) < 0)
        return -1;
      break;
    case OPT_SHALLOW: *flags |= QC_COMMIT_SHALLOW; break;
    case OPT_DELETE: *flags |= QC_COMMIT_DELETE; break;
    case OPT_KEEP: *flags |= QC_COMMIT_KEEP_ACTIVE; break;
    case OPT_FORCE: *flags |= QC_COMMIT_FORCE; break;
    default:
      bad_option ("commit", argv);
      return -1;
    }
  }
  if ((*flags & QC_COMMIT_SHALLOW) && *base) {
    usage_error ("commit", "--shallow and --base cannot be combined");
    return -1;
  }
  if (optind != argc - 1) {
    usage_error ("commit", "expected one ACTIVE image");
    return -1;
  }
  return 0;
}

int
cmd_commit (int argc, char **argv)
{
  struct chain_args ca = { 0 };
  struct job_args ja = { .say_result = true };
  const char *top = NULL, *base = NULL;
  struct qc_open_opts *o;
  struct qc_job *job;
  unsigned flags = 0;

  if (parse_args (argc, argv, &ca, &ja, &flags, &top, &base) < 0)
    return EXIT_USAGE;
  if ((o = job_open_opts (&ca)) == NULL) {
    print_lib_error ();
    return 1;
  }
  job_signals ();
  job = qc_commit_start (argv[optind], base, top, ja.bandwidth,
                         flags | ja.flags, o);
  qc_open_opts_free (o);
  return run_job (job, &ja);
}
