/* qchain info: describe an image or its chain, as qemu-img info does. */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char info_help[] =
  "Usage: qchain info [--chain] [--json] [-f FMT] IMAGE\n"
  "Describe IMAGE (with --chain: every member of its backing chain).\n"
  "--json prints the keys of 'qemu-img info --output=json'.\n\n"
  "Options:\n"
  "  --chain              describe the whole backing chain, top first\n"
  "  --json               JSON output\n"
  CHAIN_OPTS_HELP;

static void
json_snapshots (struct json *j, struct qc_image *img, int depth,
                const struct qc_info *in)
{
  uint32_t i;

  if (in->nb_snapshots == 0)
    return;
  json_begin_array (j, "snapshots");
  for (i = 0; i < in->nb_snapshots; i++) {
    struct qc_snapshot_info s = { .struct_size = sizeof s };
    if (qc_get_snapshot (img, depth, i, &s) < 0)
      continue;
    json_begin_object (j, NULL);
    if (s.icount != UINT64_MAX)
      json_u64 (j, "icount", s.icount);
    json_u64 (j, "vm-clock-nsec", s.vm_clock_nsec % 1000000000);
    json_string (j, "name", s.name);
    json_u64 (j, "date-sec", s.date_sec);
    json_u64 (j, "date-nsec", s.date_nsec);
    json_u64 (j, "vm-clock-sec", s.vm_clock_nsec / 1000000000);
    json_string (j, "id", s.id);
    json_u64 (j, "vm-state-size", s.vm_state_size);
    json_end_object (j);
  }
  json_end_array (j);
}

static void
json_bitmaps (struct json *j, struct qc_image *img, int depth,
              const struct qc_info *in)
{
  uint32_t i;

  if (!(in->flags & QC_INFO_BITMAPS))
    return;
  json_begin_array (j, "bitmaps");
  for (i = 0; i < in->nb_bitmaps; i++) {
    struct qc_bitmap_info b = { .struct_size = sizeof b };
    if (qc_get_bitmap (img, depth, i, &b) < 0)
      continue;
    json_begin_object (j, NULL);
    json_begin_array (j, "flags");
    if (b.flags & QC_BITMAP_IN_USE)
      json_string (j, NULL, "in-use");
    if (b.flags & QC_BITMAP_AUTO)
      json_string (j, NULL, "auto");
    json_end_array (j);
    json_string (j, "name", b.name);
    json_u64 (j, "granularity", b.granularity);
    json_end_object (j);
  }
  json_end_array (j);
}

static void
json_qcow2_specific (struct json *j, struct qc_image *img, int depth,
                     const struct qc_info *in)
{
  bool v3 = in->qcow2_version >= 3;

  json_begin_object (j, "format-specific");
  json_string (j, "type", "qcow2");
  json_begin_object (j, "data");
  json_string (j, "compat", v3 ? "1.1" : "0.10");
  if (in->data_file)
    json_string (j, "data-file", in->data_file);
  if (in->flags & QC_INFO_DATA_FILE)
    json_bool (j, "data-file-raw", in->flags & QC_INFO_DATA_FILE_RAW);
  json_string (j, "compression-type",
               in->compression_type ? in->compression_type : "zlib");
  if (v3)
    json_bool (j, "lazy-refcounts", in->flags & QC_INFO_LAZY_REFCOUNTS);
  json_bitmaps (j, img, depth, in);
  json_u64 (j, "refcount-bits", in->refcount_bits);
  if (in->encryption) {
    json_begin_object (j, "encrypt");
    json_string (j, "format", in->encryption == 2 ? "luks" : "aes");
    json_end_object (j);
  }
  if (v3) {
    json_bool (j, "corrupt", in->flags & QC_INFO_CORRUPT);
    json_bool (j, "extended-l2", in->flags & QC_INFO_EXTENDED_L2);
  }
  json_end_object (j);
  json_end_object (j);
}

/* Keys and their order as qemu-img 7.2 prints them. */
static void
json_layer (struct json *j, struct qc_image *img, int depth)
{
  struct qc_info in = { .struct_size = sizeof in };
  bool qcow2;

  if (qc_get_info (img, depth, &in) < 0)
    return;
  qcow2 = strcmp (in.format, "qcow2") == 0;
  json_begin_object (j, NULL);
  json_snapshots (j, img, depth, &in);
  if (in.backing_format)
    json_string (j, "backing-filename-format", in.backing_format);
  json_u64 (j, "virtual-size", in.virtual_size);
  json_string (j, "filename", in.filename);
  if (qcow2)
    json_u64 (j, "cluster-size", in.cluster_size);
  json_string (j, "format", in.format);
  json_u64 (j, "actual-size", in.actual_size);
  if (in.encryption)
    json_bool (j, "encrypted", true);
  if (qcow2)
    json_qcow2_specific (j, img, depth, &in);
  if (in.backing_filename) {
    if (in.full_backing_filename)
      json_string (j, "full-backing-filename", in.full_backing_filename);
    json_string (j, "backing-filename", in.backing_filename);
  }
  json_bool (j, "dirty-flag", in.flags & QC_INFO_DIRTY);
  json_end_object (j);
}

static void
human_layer (struct qc_image *img, int depth)
{
  struct qc_info in = { .struct_size = sizeof in };
  char size[32];
  uint32_t i;

  if (qc_get_info (img, depth, &in) < 0)
    return;
  printf ("image: %s\nfile format: %s\n", in.filename, in.format);
  human_size (in.virtual_size, size, sizeof size);
  printf ("virtual size: %s (%" PRIu64 " bytes)\n", size, in.virtual_size);
  human_size (in.actual_size, size, sizeof size);
  printf ("disk size: %s\n", size);
  if (in.cluster_size)
    printf ("cluster_size: %" PRIu32 "\n", in.cluster_size);
  if (in.encryption)
    printf ("encrypted: yes\n");
  if (in.backing_filename) {
    printf ("backing file: %s", in.backing_filename);
    if (in.full_backing_filename
        && strcmp (in.full_backing_filename, in.backing_filename) != 0)
      printf (" (actual path: %s)", in.full_backing_filename);
    printf ("\n");
    if (in.backing_format)
      printf ("backing file format: %s\n", in.backing_format);
  }
  if (in.nb_snapshots) {
    printf ("Snapshot list:\nID        TAG\n");
    for (i = 0; i < in.nb_snapshots; i++) {
      struct qc_snapshot_info s = { .struct_size = sizeof s };
      if (qc_get_snapshot (img, depth, i, &s) == 0)
        printf ("%-9s %s\n", s.id, s.name);
    }
  }
  if (in.qcow2_version) {
    bool v3 = in.qcow2_version >= 3;
    printf ("Format specific information:\n");
    printf ("    compat: %s\n", v3 ? "1.1" : "0.10");
    if (in.data_file)
      printf ("    data file: %s\n", in.data_file);
    printf ("    compression type: %s\n",
            in.compression_type ? in.compression_type : "zlib");
    if (v3)
      printf ("    lazy refcounts: %s\n",
              in.flags & QC_INFO_LAZY_REFCOUNTS ? "true" : "false");
    if (in.nb_bitmaps)
      printf ("    bitmaps: %" PRIu32 "\n", in.nb_bitmaps);
    printf ("    refcount bits: %" PRIu32 "\n", in.refcount_bits);
    if (v3) {
      printf ("    corrupt: %s\n", in.flags & QC_INFO_CORRUPT ? "true" : "false");
      printf ("    extended l2: %s\n",
              in.flags & QC_INFO_EXTENDED_L2 ? "true" : "false");
    }
  }
  if (in.flags & QC_INFO_DIRTY)
    printf ("dirty flag: true\n");
}

int
cmd_info (int argc, char **argv)
{
  static const struct option longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "chain", no_argument, NULL, 'c' },
    { "backing-chain", no_argument, NULL, 'c' },
    { "json", no_argument, NULL, 'j' },
    CHAIN_LONG_OPTS,
    { NULL, 0, NULL, 0 }
  };
  struct chain_args a = { 0 };
  bool chain = false, json = false;
  struct qc_image *img;
  struct json j;
  int c, i, n;

  while ((c = getopt_long (argc, argv, "hf:", longopts, NULL)) != -1) {
    int r = chain_arg ("info", &a, c, optarg);
    if (r < 0)
      return EXIT_USAGE;
    if (r > 0)
      continue;
    switch (c) {
    case 'h': fputs (info_help, stdout); return 0;
    case 'c': chain = true; break;
    case 'j': json = true; break;
    default: bad_option ("info", argv); return EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    usage_error ("info", "expected one IMAGE");
    return EXIT_USAGE;
  }
  /* Describing must work on images whose data we would refuse to read. */
  img = open_image (argv[optind], &a, a.format,
                    OPEN_DESCRIBE | (chain ? 0 : OPEN_NO_BACKING));
  if (img == NULL)
    return 1;
  n = chain ? qc_chain_length (img) : 1;
  if (json) {
    json_init (&j, stdout);
    if (chain)
      json_begin_array (&j, NULL);
    for (i = 0; i < n; i++)
      json_layer (&j, img, i);
    if (chain)
      json_end_array (&j);
    json_finish (&j);
  }
  else
    for (i = 0; i < n; i++) {
      if (i)
        printf ("\n");
      human_layer (img, i);
    }
  qc_close (img);
  return 0;
}
