/* Option helpers, image opening and error printing for the qchain command. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char *progname = "qchain";

void
print_lib_error (void)
{
  const char *msg = qc_get_error ();

  fprintf (stderr, "%s: %s\n", progname, msg ? msg : "unknown error");
}

void
usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s %s: ", progname, cmd);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, " (see '%s %s --help')\n", progname, cmd);
}

void
bad_option (const char *cmd, char **argv)
{
  if (optopt && strchr ("fFbor", optopt) && argv[optind - 1][0] == '-'
      && argv[optind - 1][1] == optopt && argv[optind - 1][2] == '\0')
    usage_error (cmd, "option -%c needs a value", optopt);
  else if (optopt)
    usage_error (cmd, "unknown option -%c", optopt);
  else
    usage_error (cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
}

int
check_format_arg (const char *cmd, const char *opt, const char *fmt)
{
  if (fmt == NULL || strcmp (fmt, "qcow2") == 0 || strcmp (fmt, "raw") == 0)
    return 0;
  usage_error (cmd, "%s %s: unknown format (qcow2 or raw)", opt, fmt);
  return -1;
}

int
parse_u64 (const char *s, uint64_t *v)
{
  char *end;
  unsigned long long x;

  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  x = strtoull (s, &end, 10);
  if (errno || *end)
    return -1;
  *v = x;
  return 0;
}

int
chain_arg (const char *cmd, struct chain_args *a, int c, const char *arg)
{
  uint64_t n;

  switch (c) {
  case 'f':
    if (check_format_arg (cmd, "-f", arg) < 0)
      return -1;
    a->format = arg;
    return 1;
  case 0x100:
    a->probe = true;
    return 1;
  case 0x101:
    if (parse_u64 (arg, &n) < 0 || n == 0 || n > 65536) {
      usage_error (cmd, "--max-depth: '%s' is not a number from 1 to 65536",
                   arg);
      return -1;
    }
    a->max_depth = (unsigned) n;
    return 1;
  case 0x102:
    if (a->n_dirs >= sizeof a->dirs / sizeof a->dirs[0]) {
      usage_error (cmd, "too many --backing-dir options");
      return -1;
    }
    a->dirs[a->n_dirs++] = arg;
    return 1;
  }
  return 0;
}

struct qc_image *
open_image (const char *path, const struct chain_args *a, const char *format,
            unsigned flags)
{
  struct qc_open_opts *o = qc_open_opts_new ();
  struct qc_image *img = NULL;
  unsigned i;

  if (o == NULL)
    goto out;
  if (format && qc_open_opts_set_format (o, format) < 0)
    goto out;
  qc_open_opts_set_probe (o, a->probe);
  qc_open_opts_set_describe_only (o, (flags & OPEN_DESCRIBE) != 0);
  qc_open_opts_set_no_backing (o, (flags & OPEN_NO_BACKING) != 0);
  if (a->max_depth && qc_open_opts_set_max_depth (o, a->max_depth) < 0)
    goto out;
  for (i = 0; i < a->n_dirs; i++)
    if (qc_open_opts_add_allowed_dir (o, a->dirs[i]) < 0)
      goto out;
  img = qc_open (path, o);
 out:
  if (img == NULL)
    print_lib_error ();
  qc_open_opts_free (o);
  return img;
}

/* Three significant digits in the largest binary unit below the value,
 * the way qemu-img prints disk sizes. */
void
human_size (uint64_t v, char *buf, size_t n)
{
  static const char *const units[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
  unsigned i = 0;
  double d = (double) v;

  /* Move up a unit once the value would print as 1000 or more. */
  while (i + 1 < sizeof units / sizeof units[0] && d >= 1000.0) {
    d /= 1024;
    i++;
  }
  snprintf (buf, n, "%0.3g %sB", d, units[i]);
}
