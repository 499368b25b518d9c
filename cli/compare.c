/* qchain compare: are two guest views identical (exit 0), different (1), or error (2). */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>

#include "cli.h"

static const char compare_help[] =
  "Usage: qchain compare [-f FMT] [-F FMT] A B\n"
  "Compare the guest views of A and B. Exit 0 when identical, 1 when they\n"
  "differ (the first differing offset is printed), 2 on error. A size\n"
  "difference counts only if the longer image's tail is not all zeroes.\n\n"
  "Options:\n"
  "  -F FMT               format of B (qcow2 or raw)\n"
  CHAIN_OPTS_HELP;

int
cmd_compare (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  struct chain_args a = { 0 };
  const char *fmt_b = NULL;
  struct qc_image *ia = NULL, *ib = NULL;
  uint64_t diff = 0;
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:F:", longopts, NULL)) != -1) {
    int h = chain_arg ("compare", &a, c, optarg);
    if (h < 0)
      return EXIT_USAGE;
    if (h > 0)
      continue;
    switch (c) {
    case 'h': fputs (compare_help, stdout); return 0;
    case 'F':
      if (check_format_arg ("compare", "-F", optarg) < 0)
        return EXIT_USAGE;
      fmt_b = optarg;
      break;
    default: bad_option ("compare", argv); return EXIT_USAGE;
    }
  }
  if (optind != argc - 2) {
    usage_error ("compare", "expected two images A and B");
    return EXIT_USAGE;
  }
  ia = open_image (argv[optind], &a, a.format, 0);
  if (ia)
    ib = open_image (argv[optind + 1], &a, fmt_b, 0);
  if (ib == NULL) {
    qc_close (ia);
    return 2;
  }
  r = qc_compare (ia, ib, &diff);
  if (r < 0)
    print_lib_error ();
  else if (r == 0)
    printf ("Images are identical.\n");
  else
    printf ("Content mismatch at offset %" PRIu64 "!\n", diff);
  qc_close (ia);
  qc_close (ib);
  return r < 0 ? 2 : r;
}
