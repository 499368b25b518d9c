/* qchain: the command-line tool; dispatches to one file per command. */
#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
};

static const struct command commands[] = {
  { "info", cmd_info, "describe an image or its whole chain" },
  { "map", cmd_map, "show the guest view as extents" },
  { "compare", cmd_compare, "compare the guest views of two images" },
  { "create", cmd_create, "create a qcow2 or raw image" },
  { "check", cmd_check, "check (and repair) an image's metadata" },
  { "commit", cmd_commit, "merge layers of a chain down into a base" },
  { "copy", cmd_copy, "copy a chain's guest view into a new or reused image" },
  { "pull", cmd_pull, "copy the layers above a base into an image" },
  { "rebase", cmd_rebase, "give an image a new backing file" },
};

static void
usage (FILE *f)
{
  size_t i;

  fprintf (f, "Usage: %s COMMAND [OPTIONS] ARGS...\n"
           "Offline engine for qcow2/raw backing chains.\n\nCommands:\n",
           progname);
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (f, "\n'%s COMMAND --help' describes a command; man qchain.\n",
           progname);
}

int
main (int argc, char **argv)
{
  size_t i;

  if (argc < 2) {
    usage (stderr);
    return EXIT_USAGE;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return 0;
  }
  if (strcmp (argv[1], "--version") == 0) {
    printf ("qchain %s\n", qc_version ());
    return 0;
  }
  /* Commands report bad options themselves, in one line. */
  opterr = 0;
  for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "%s: unknown command '%s' (see '%s --help')\n", progname,
           argv[1], progname);
  return EXIT_USAGE;
}
