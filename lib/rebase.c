/* qc_rebase_start: give an image a new backing file, keeping its guest view (safe) or not (unsafe). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "internal.h"
#include "retarget.h"

struct rebase_args {
  const char *image;
  const char *name;                  /* NEWBASE as given; "" = none */
  const char *format;                /* -F, or NULL */
  unsigned flags;
  const struct qc_open_opts *opts;
};

/* NEWBASE's format: the caller's, else its magic says qcow2 or raw;
 * nothing else is ever probed. */
static int
newbase_format (const struct rebase_args *a, const char *path,
                char **out)
{
  struct io *io = NULL;
  bool qcow2 = false;
  int r;

  if (a->format != NULL) {
    if (format_by_name (a->format) == NULL)
      return set_error (EINVAL, "unknown backing format '%s' (use qcow2 "
                        "or raw)", a->format);
    *out = strdup (a->format);
  }
  else {
    if ((r = io_open_file (path, 0, &io)) < 0)
      return r;
    r = format_is_qcow2 (io, &qcow2);
    io_close (io);
    if (r < 0)
      return r;
    *out = strdup (qcow2 ? "qcow2" : "raw");
  }
  return *out ? 0 : set_error (ENOMEM, "out of memory");
}

/* NEWBASE as IMAGE will resolve it: relative to IMAGE's directory. */
static int
newbase_path (const struct rebase_args *a, char **path)
{
  struct chain_policy pol;
  int r;

  if ((r = backing_name_check (a->image, a->name)) < 0
      || (r = backing_resolve (a->image, a->name, path)) < 0)
    return r;
  opts_to_policy (a->opts, &pol);
  if (pol.n_allowed_dirs > 0)
    return backing_confined (a->image, *path, pol.allowed_dirs,
                             pol.n_allowed_dirs);
  return 0;
}

static bool
same_file (const struct layer *x, dev_t dev, ino_t ino)
{
  return x->dev == dev && x->ino == ino;
}

/* NEWBASE's chain must not lead back to IMAGE, nor make the chain from
 * IMAGE deeper than the policy allows. Checked before IMAGE is opened
 * (and locked for writing), so that a loop reads as a loop. */
static int
check_new_chain (const struct rebase_args *a, struct chain *nc)
{
  struct chain_policy pol;
  struct stat st;
  unsigned i, max;

  if (stat (a->image, &st) < 0)
    return set_image_error (a->image, errno, "%m");
  for (i = 0; i < nc->n; i++)
    if (same_file (&nc->layers[i], st.st_dev, st.st_ino))
      return set_image_error (a->image, ELOOP, "cannot be rebased onto %s: "
                              "%s", a->name, i ? "its backing chain leads "
                              "back to the image (a loop)" : "that is the "
                              "image itself");
  opts_to_policy (a->opts, &pol);
  max = pol.max_depth ? pol.max_depth : CHAIN_DEFAULT_MAX_DEPTH;
  if (nc->n >= max)
    return set_image_error (a->image, ELOOP, "rebased onto %s, its chain "
                            "would be deeper than %u layers", a->name, max);
  return 0;
}

static int
open_new_chain (const struct rebase_args *a, const char *path,
                struct retarget_params *p)
{
  struct chain_policy pol;
  int r;

  opts_to_policy (a->opts, &pol);
  pol.format = p->format;
  pol.writable = false;
  pol.no_backing = false;
  pol.describe_only = false;
  if ((r = chain_open (path, &pol, &p->nc)) < 0)
    return r;
  return check_new_chain (a, p->nc);
}

/* The depth at which IMAGE's old chain holds NEWBASE's whole chain (the
 * same files, in the same formats), or 0. */
static unsigned
depth_in_old_chain (struct chain *c, struct chain *nc)
{
  unsigned k, i;

  for (k = 1; k < c->n; k++)
    if (same_file (&c->layers[k], nc->layers[0].dev, nc->layers[0].ino))
      break;
  if (k >= c->n || c->n - k != nc->n)
    return 0;
  for (i = 0; i < nc->n; i++)
    if (!same_file (&c->layers[k + i], nc->layers[i].dev, nc->layers[i].ino)
        || c->layers[k + i].ops != nc->layers[i].ops)
      return 0;
  return k;
}

/* Safe: both chains are open; plan through IMAGE's own chain when it
 * holds NEWBASE's. */
static void
choose_safe (struct retarget_params *p)
{
  p->mode = RT_REBASE_OTHER;
  if (p->nc && (p->keep = depth_in_old_chain (p->c, p->nc)) > 0) {
    p->mode = RT_REBASE_KEEP;
    chain_close (p->nc);
    p->nc = NULL;
  }
}

/* Unsafe: NEWBASE need not exist or open; if its chain opens, it must not
 * hold IMAGE (the rewritten header would close a loop). Opened without
 * locks: IMAGE is already locked for writing by this process. */
static int
check_unsafe (const struct rebase_args *a, const char *path,
              struct retarget_params *p)
{
  struct chain *c = p->c, *nc = NULL;
  struct chain_policy pol;
  struct stat st;
  unsigned i;
  int r = 0;

  if (path == NULL || stat (path, &st) < 0)
    return 0;
  if (same_file (&c->layers[0], st.st_dev, st.st_ino))
    return set_image_error (a->image, ELOOP, "cannot be its own backing "
                            "file (%s)", a->name);
  opts_to_policy (a->opts, &pol);
  pol.format = p->format;
  pol.writable = false;
  pol.no_backing = false;
  pol.describe_only = true;
  pol.lock = false;
  if (chain_open (path, &pol, &nc) < 0) {
    clear_error ();                  /* a broken NEWBASE is allowed here */
    return 0;
  }
  for (i = 1; i < nc->n && r == 0; i++)
    if (same_file (&nc->layers[i], c->layers[0].dev, c->layers[0].ino))
      r = set_image_error (a->image, ELOOP, "cannot be rebased onto %s: its "
                           "backing chain leads back to the image (a loop)",
                           a->name);
  chain_close (nc);
  return r;
}

/* NEWBASE's path (resolved from IMAGE's directory) and format. */
static int
newbase (const struct rebase_args *a, struct retarget_params *p, char **path)
{
  int r;

  if ((r = newbase_path (a, path)) < 0)
    return r;
  if ((a->flags & QC_REBASE_UNSAFE) && a->format == NULL
      && access (*path, F_OK) < 0)
    return set_image_error (a->name, ENOENT, "does not exist: give its "
                            "format (-F) to name it anyway");
  if ((r = newbase_format (a, *path, &p->format)) < 0)
    return r;
  if ((p->name = strdup (a->name)) == NULL)
    return set_error (ENOMEM, "out of memory");
  return 0;
}

static int
rebase_prepare (const struct rebase_args *a, struct retarget_params *p)
{
  bool unsafe = a->flags & QC_REBASE_UNSAFE;
  char *path = NULL;
  int r = 0;

  if (*a->name)
    r = newbase (a, p, &path);
  if (r == 0 && path && !unsafe)
    r = open_new_chain (a, path, p);
  if (r == 0)
    r = retarget_open_image (a->image, a->opts, unsafe, &p->c);
  if (r == 0 && unsafe) {
    p->mode = RT_NAME_ONLY;
    r = check_unsafe (a, path, p);
  }
  else if (r == 0)
    choose_safe (p);
  free (path);
  return r;
}

struct qc_job *
qc_rebase_start (const char *image, const char *new_base,
                 const char *new_base_format, uint64_t bandwidth,
                 unsigned flags, const struct qc_open_opts *opts)
{
  struct rebase_args a = { image, new_base ? new_base : "", new_base_format,
                           flags, opts };
  struct retarget_params p = { .type = QC_JOB_REBASE,
                               .io_flags = flags & QC_JOB_IO_FLAGS };
  struct qc_job *j = NULL;
  int r;

  clear_error ();
  if (image == NULL || *image == '\0')
    r = set_error (EINVAL, "rebase needs an image");
  else if (flags & ~(QC_REBASE_UNSAFE | QC_JOB_IO_FLAGS))
    r = set_error (EINVAL, "unknown rebase flags 0x%x", flags);
  else if ((r = job_check_io_flags (flags)) < 0)
    ;
  else if ((r = rebase_prepare (&a, &p)) == 0)
    r = retarget_start (&p, bandwidth, &j);
  if (r < 0) {
    chain_close (p.c);
    chain_close (p.nc);
    free (p.name);
    free (p.format);
    public_error (r);
    return NULL;
  }
  return j;
}
