/* qc_open_opts: how qc_open resolves and opens a chain. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "format.h"
#include "internal.h"

struct qc_open_opts *
qc_open_opts_new (void)
{
  struct qc_open_opts *o = calloc (1, sizeof *o);

  clear_error ();
  if (o == NULL) {
    public_error (set_error (ENOMEM, "out of memory"));
    return NULL;
  }
  return o;
}

void
qc_open_opts_free (struct qc_open_opts *o)
{
  size_t i;

  if (o == NULL)
    return;
  for (i = 0; i < o->n_allowed_dirs; i++)
    free (o->allowed_dirs[i]);
  free (o->allowed_dirs);
  free (o->format);
  free (o);
}

int
qc_open_opts_set_format (struct qc_open_opts *o, const char *format)
{
  char *copy = NULL;

  clear_error ();
  if (format) {
    if (format_by_name (format) == NULL)
      return public_error (set_error (EINVAL, "unknown format '%s' "
                                      "(expected qcow2 or raw)", format));
    copy = strdup (format);
    if (copy == NULL)
      return public_error (set_error (ENOMEM, "out of memory"));
  }
  free (o->format);
  o->format = copy;
  return 0;
}

int
qc_open_opts_set_probe (struct qc_open_opts *o, int allow)
{
  o->probe = allow != 0;
  return 0;
}

int
qc_open_opts_set_max_depth (struct qc_open_opts *o, unsigned depth)
{
  clear_error ();
  if (depth == 0)
    return public_error (set_error (EINVAL, "maximum chain depth must be at least 1"));
  o->max_depth = depth;
  return 0;
}

int
qc_open_opts_add_allowed_dir (struct qc_open_opts *o, const char *dir)
{
  char *real, **v;

  clear_error ();
  real = realpath (dir, NULL);
  if (real == NULL)
    return public_error (set_error (errno, "%s: %m", dir));
  v = realloc (o->allowed_dirs, (o->n_allowed_dirs + 1) * sizeof *v);
  if (v == NULL) {
    free (real);
    return public_error (set_error (ENOMEM, "out of memory"));
  }
  v[o->n_allowed_dirs++] = real;
  o->allowed_dirs = v;
  return 0;
}

int
qc_open_opts_set_writable (struct qc_open_opts *o, int writable)
{
  o->writable = writable != 0;
  return 0;
}

int
qc_open_opts_set_no_backing (struct qc_open_opts *o, int no_backing)
{
  o->no_backing = no_backing != 0;
  return 0;
}

int
qc_open_opts_set_describe_only (struct qc_open_opts *o, int yes)
{
  o->describe_only = yes != 0;
  return 0;
}

int
qc_open_opts_set_force_share (struct qc_open_opts *o, int yes)
{
  o->force_share = yes != 0;
  return 0;
}

void
opts_to_policy (const struct qc_open_opts *o, struct chain_policy *p)
{
  memset (p, 0, sizeof *p);
  p->max_depth = CHAIN_DEFAULT_MAX_DEPTH;
  /* Jobs lock what they open unless told not to; qc_open, which only
   * inspects, drops the locks for a read-only open. */
  p->lock = true;
  if (o == NULL)
    return;
  p->lock = !o->force_share;
  p->format = o->format;
  p->probe = o->probe;
  p->writable = o->writable;
  p->no_backing = o->no_backing;
  p->describe_only = o->describe_only;
  if (o->max_depth)
    p->max_depth = o->max_depth;
  p->allowed_dirs = o->allowed_dirs;
  p->n_allowed_dirs = o->n_allowed_dirs;
}
