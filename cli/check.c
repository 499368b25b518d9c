/* qchain check: refcount and metadata consistency, exit codes and JSON as qemu-img check. */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char check_help[] =
  "Usage: qchain check [--repair leaks|all] [--json] [-f FMT] IMAGE\n"
  "Check IMAGE's metadata and refcounts. Exit 0 clean, 2 corruptions,\n"
  "3 leaked clusters only, 1 the check could not finish (as qemu-img check).\n\n"
  "Options:\n"
  "  --repair leaks  free leaked clusters\n"
  "  --repair all    also fix refcounts that are too low\n"
  "  --json          JSON output (keys of qemu-img check --output=json)\n"
  "  -f FMT          format of IMAGE\n";

/* qemu-img prints each optional key only when it is not zero. */
static void
print_json (const char *path, const char *format,
            const struct qc_check_result *r)
{
  struct json j;

  json_init (&j, stdout);
  json_begin_object (&j, NULL);
  if (r->image_end_offset)
    json_u64 (&j, "image-end-offset", r->image_end_offset);
  if (r->leaks)
    json_u64 (&j, "leaks", r->leaks);
  if (r->corruptions)
    json_u64 (&j, "corruptions", r->corruptions);
  if (r->leaks_fixed)
    json_u64 (&j, "leaks-fixed", r->leaks_fixed);
  if (r->corruptions_fixed)
    json_u64 (&j, "corruptions-fixed", r->corruptions_fixed);
  if (r->compressed_clusters)
    json_u64 (&j, "compressed-clusters", r->compressed_clusters);
  if (r->total_clusters)
    json_u64 (&j, "total-clusters", r->total_clusters);
  json_u64 (&j, "check-errors", r->check_errors);
  if (r->allocated_clusters)
    json_u64 (&j, "allocated-clusters", r->allocated_clusters);
  json_string (&j, "filename", path);
  json_string (&j, "format", format);
  if (r->fragmented_clusters)
    json_u64 (&j, "fragmented-clusters", r->fragmented_clusters);
  json_end_object (&j);
  json_finish (&j);
}

static void
print_human (const struct qc_check_result *r)
{
  double total = r->total_clusters ? (double) r->total_clusters : 1;
  double alloc = r->allocated_clusters ? (double) r->allocated_clusters : 1;

  if (r->leaks_fixed || r->corruptions_fixed)
    printf ("The following inconsistencies were found and repaired:\n\n"
            "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n",
            r->leaks_fixed, r->corruptions_fixed);
  if (r->corruptions == 0 && r->leaks == 0 && r->check_errors == 0)
    printf ("No errors were found on the image.\n");
  if (r->corruptions)
    printf ("\n%" PRIu64 " errors were found on the image.\nData may be "
            "corrupted, or further writes to the image may corrupt it.\n",
            r->corruptions);
  if (r->leaks)
    printf ("\n%" PRIu64 " leaked clusters were found on the image.\nThis "
            "means waste of disk space, but no harm to data.\n", r->leaks);
  if (r->check_errors)
    printf ("\n%" PRIu64 " internal errors have occurred during the check.\n",
            r->check_errors);
  if (r->total_clusters)
    printf ("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
            "%0.2f%% compressed clusters\n", r->allocated_clusters,
            r->total_clusters, r->allocated_clusters * 100.0 / total,
            r->fragmented_clusters * 100.0 / alloc,
            r->compressed_clusters * 100.0 / alloc);
  if (r->image_end_offset)
    printf ("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/* Findings go to stderr, as qemu-img check prints them. */
static void
report_line (void *opaque, const char *line)
{
  fprintf (stderr, "%s\n", line);
}

int
cmd_check (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "repair", required_argument, NULL, 'r' },
    { NULL, 0, NULL, 0 }
  };
  struct qc_check_result res = { .struct_size = sizeof res };
  const char *format = NULL;
  unsigned flags = 0;
  bool json = false;
  int c, r;

  while ((c = getopt_long (argc, argv, "hf:r:", longopts, NULL)) != -1) {
    switch (c) {
    case 'h': fputs (check_help, stdout); return 0;
    case 'f': format = optarg; break;
    case 'j': json = true; break;
    case 'r':
      if (strcmp (optarg, "leaks") == 0)
        flags = QC_CHECK_REPAIR_LEAKS;
      else if (strcmp (optarg, "all") == 0)
        flags = QC_CHECK_REPAIR_LEAKS | QC_CHECK_REPAIR_ALL;
      else {
        usage_error ("check", "--repair takes leaks or all, not '%s'", optarg);
        return EXIT_USAGE;
      }
      break;
    default: bad_option ("check", argv); return EXIT_USAGE;
    }
  }
  if (check_format_arg ("check", "-f", format) < 0)
    return EXIT_USAGE;
  if (optind != argc - 1) {
    usage_error ("check", "expected one IMAGE");
    return EXIT_USAGE;
  }
  r = qc_check (argv[optind], format, flags, &res, report_line, NULL);
  if (r < 0) {
    print_lib_error ();
    return 1;
  }
  if (json)
    print_json (argv[optind], format ? format : "qcow2", &res);
  else
    print_human (&res);
  return r;
}
