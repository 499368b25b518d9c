/* qchain copy: libvirt's block copy of a chain's guest view into DEST, with progress and abort. */
#include <config.h>

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char copy_help[] =
  "Usage: qchain copy [--shallow] [--raw | -O FMT] [--reuse-existing] [-o OPTS]\n"
  "                   [--compress[=zlib|zstd]] [--bandwidth R]\n"
  "                   [-p | --progress=json] [--no-uring] [--cache=MODE] [-f FMT]\n"
  "                   SRC DEST\n"
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
  JOB_OPTS_HELP
  CHAIN_OPTS_HELP;

enum { OPT_SHALLOW = 0x200, OPT_RAW, OPT_REUSE, OPT_COMPRESS };

static int
parse_args (int argc, char **argv, struct chain_args *ca, unsigned *flags,
            const char **options, struct job_args *ja, bool *want_qcow2)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "shallow", no_argument, NULL, OPT_SHALLOW },
    { "raw", no_argument, NULL, OPT_RAW },
    { "reuse-existing", no_argument, NULL, OPT_REUSE },
    { "compress", optional_argument, NULL, OPT_COMPRESS },
    JOB_LONG_OPTS,
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:O:o:p", longopts, NULL)) != -1) {
    if ((r = chain_arg ("copy", ca, c, optarg)) != 0
        || (r = job_arg ("copy", ja, c, optarg)) != 0) {
      if (r < 0)
        return -1;
      continue;
    }
    switch (c) {
    case 'h': fputs (copy_help, stdout); exit (0);
    case OPT_SHALLOW: *flags |= QC_COPY_SHALLOW; break;
    case OPT_RAW: *flags |= QC_COPY_RAW; break;
    case OPT_REUSE: *flags |= QC_COPY_REUSE_EXT; break;
    case 'o': *options = optarg; break;
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

int
cmd_copy (int argc, char **argv)
{
  struct chain_args ca = { 0 };
  struct job_args ja = { 0 };
  const char *options = NULL;
  struct qc_open_opts *o;
  struct qc_job *job;
  unsigned flags = 0;
  bool want_qcow2 = false;

  if (parse_args (argc, argv, &ca, &flags, &options, &ja, &want_qcow2) < 0)
    return EXIT_USAGE;
  if (want_qcow2 && (flags & QC_COPY_RAW)) {
    usage_error ("copy", "--raw and -O qcow2 contradict each other");
    return EXIT_USAGE;
  }
  if (want_qcow2)
    flags |= QC_COPY_QCOW2;
  if ((o = job_open_opts (&ca)) == NULL) {
    print_lib_error ();
    return 1;
  }
  job_signals ();
  job = qc_copy_start (argv[optind], argv[optind + 1], options, ja.bandwidth,
                       flags | ja.flags, o);
  qc_open_opts_free (o);
  return run_job (job, &ja);
}
