/* qchain map: the guest view as extents, JSON as qemu-img map prints it. */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char map_help[] =
  "Usage: qchain map [--json] [-f FMT] IMAGE\n"
  "Show the guest view of IMAGE as extents: which layer (depth) holds each\n"
  "range and whether it is data, zeroes or unallocated.\n"
  "--json prints what 'qemu-img map --output=json' prints.\n\n"
  "Options:\n"
  "  --json               JSON output\n"
  CHAIN_OPTS_HELP;

struct map_out {
  struct qc_image *img;
  bool json;
  bool first;
};

static int
print_json (struct map_out *m, const struct qc_extent *e)
{
  printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %"
          PRIu32 ", \"present\": %s, \"zero\": %s, \"data\": %s",
          m->first ? "[" : ",\n", e->start, e->length, e->depth,
          e->present ? "true" : "false", e->zero ? "true" : "false",
          e->data ? "true" : "false");
  if (e->has_offset)
    printf (", \"offset\": %" PRIu64, e->offset);
  printf ("}");
  return 0;
}

static int
print_human (struct map_out *m, const struct qc_extent *e)
{
  struct qc_info in = { .struct_size = sizeof in };
  const char *what;

  if (m->first)
    printf ("%-18s %-18s %-5s %-11s %-18s %s\n", "Offset", "Length", "Depth",
            "Type", "Mapped to", "File");
  if (!e->present)
    what = "unallocated";
  else if (e->data)
    what = e->zero ? "data(zero)" : "data";
  else
    what = "zero";
  qc_get_info (m->img, (int) e->depth, &in);
  printf ("%#-18" PRIx64 " %#-18" PRIx64 " %-5" PRIu32 " %-11s ", e->start,
          e->length, e->depth, what);
  if (e->has_offset)
    printf ("%#-18" PRIx64 " %s\n", e->offset, in.filename);
  else
    printf ("%-18s %s\n", "-", e->present ? in.filename : "-");
  return 0;
}

static int
extent_cb (void *opaque, const struct qc_extent *e)
{
  struct map_out *m = opaque;
  int r = m->json ? print_json (m, e) : print_human (m, e);

  m->first = false;
  return r;
}

int
cmd_map (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  struct chain_args a = { 0 };
  struct map_out m = { .first = true };
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:", longopts, NULL)) != -1) {
    int h = chain_arg ("map", &a, c, optarg);
    if (h < 0)
      return EXIT_USAGE;
    if (h > 0)
      continue;
    switch (c) {
    case 'h': fputs (map_help, stdout); return 0;
    case 'j': m.json = true; break;
    default: bad_option ("map", argv); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    usage_error ("map", "expected one IMAGE");
    return EXIT_USAGE;
  }
  m.img = open_image (argv[optind], &a, a.format, 0);
  if (m.img == NULL)
    return 1;
  r = qc_map (m.img, 0, (uint64_t) qc_get_size (m.img), extent_cb, &m);
  if (r < 0) {
    /* Whatever was printed is incomplete; end the line before the error. */
    if (!m.first)
      printf ("\n");
    fflush (stdout);
    print_lib_error ();
    qc_close (m.img);
    return 1;
  }
  if (m.json && m.first) {
    /* An empty image: qemu-img still prints its one, empty, extent. */
    struct qc_extent none = { 0 };
    print_json (&m, &none);
  }
  if (m.json)
    printf ("]\n");
  qc_close (m.img);
  return 0;
}
