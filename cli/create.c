/* qchain create: a new qcow2 or raw image, options as qemu-img create. */
#include <config.h>

#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static const char create_help[] =
  "Usage: qchain create [-f qcow2|raw] [-b BACKING [-F FMT]] [-o OPTS] IMAGE [SIZE]\n"
  "Create IMAGE (it must not exist). SIZE takes suffixes K, M, G, T (binary);\n"
  "without it the size is the backing file's.\n\n"
  "Options:\n"
  "  -f FMT        qcow2 (default) or raw\n"
  "  -b BACKING    backing file name to record; relative names are resolved\n"
  "                from IMAGE's directory\n"
  "  -F FMT        the backing file's format; default: read from its header\n"
  "                when it is qcow2 (a backing file is never probed as raw)\n"
  "  -o OPTS       comma-separated: compat=0.10|1.1, cluster_size=SIZE,\n"
  "                refcount_bits=N, extended_l2=on|off,\n"
  "                compression_type=zlib|zstd, lazy_refcounts=on|off\n";

int
cmd_create (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
  };
  const char *format = NULL, *backing = NULL, *backing_fmt = NULL;
  const char *options = NULL;
  uint64_t size = 0;
  int c;

  while ((c = getopt_long (argc, argv, "hf:b:F:o:", longopts, NULL)) != -1) {
    switch (c) {
    case 'h': fputs (create_help, stdout); return 0;
    case 'f': format = optarg; break;
    case 'b': backing = optarg; break;
    case 'F': backing_fmt = optarg; break;
    case 'o': options = optarg; break;
    default: bad_option ("create", argv); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1 && optind != argc - 2) {
    usage_error ("create", "expected IMAGE [SIZE]");
    return EXIT_USAGE;
  }
  if (optind == argc - 2 && qc_parse_size (argv[optind + 1], &size) < 0) {
    usage_error ("create", "'%s' is not a size", argv[optind + 1]);
    return EXIT_USAGE;
  }
  if (check_format_arg ("create", "-f", format) < 0
      || check_format_arg ("create", "-F", backing_fmt) < 0)
    return EXIT_USAGE;
  if (backing_fmt && backing == NULL) {
    usage_error ("create", "-F needs -b");
    return EXIT_USAGE;
  }
  if (qc_create (argv[optind], format, size, backing, backing_fmt, options) < 0) {
    print_lib_error ();
    return 1;
  }
  return 0;
}
