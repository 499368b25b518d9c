/* Opening a backing chain under the chain policy, closing it, finding its members. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "errors.h"
#include "chain.h"
#include "lock.h"

/* Make room for one more layer; the array only grows while opening. */
static int
chain_grow (struct chain *c, unsigned *cap, const char *name)
{
  struct layer *nl;
  unsigned ncap;
  size_t bytes;

  if (c->n < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 4;
  if (ncap <= *cap || MUL_OVERFLOW ((size_t) ncap, sizeof *nl, &bytes))
    return set_image_error (name, ENOMEM, "chain too long");
  nl = realloc (c->layers, bytes);
  if (nl == NULL)
    return set_image_error (name, ENOMEM, "out of memory");
  memset (nl + *cap, 0, (size_t) (ncap - *cap) * sizeof *nl);
  c->layers = nl;
  *cap = ncap;
  return 0;
}

/* The format of the top image: the caller's, else the magic decides. */
static int
top_format (struct io *io, const char *format, const struct format_ops **ops)
{
  bool yes;
  int r;

  if (format != NULL) {
    *ops = format_by_name (format);
    if (*ops == NULL)
      return set_image_error (io->name, EINVAL,
                              "unknown format '%s' (use qcow2 or raw)", format);
    return 0;
  }
  r = format_is_qcow2 (io, &yes);
  if (r < 0)
    return r;
  *ops = yes ? &qcow2_format : &raw_format;
  return 0;
}

/* A backing layer's format: written in the overlay, or probed if allowed.
 * Probing can only say qcow2 or raw; a raw file never names a backing
 * file, so a probe cannot hand out a path to an arbitrary file. */
static int
backing_format (const struct layer *over, struct io *io, bool probe, const struct format_ops **ops)
{
  const char *f = over->info.backing_format;
  bool yes;
  int r;

  if (f != NULL) {
    if (strcmp (f, "qcow2") != 0 && strcmp (f, "raw") != 0)
      return set_image_error (over->path, ENOTSUP,
                              "backing file '%s' has unsupported format '%s'",
                              over->info.backing_filename, f);
    *ops = format_by_name (f);
    return 0;
  }
  if (!probe)
    return set_image_error (over->path, EINVAL,
                            "backing file '%s' has no backing format; "
                            "pass -F or allow probing",
                            over->info.backing_filename);
  r = format_is_qcow2 (io, &yes);
  if (r < 0)
    return r;
  *ops = yes ? &qcow2_format : &raw_format;
  return 0;
}

/* Identify the opened file by inode, which every spelling of it shares. */
static int
layer_stat (struct layer *l)
{
  struct stat st;

  if (fstat (l->io->fd, &st) < 0)
    return set_image_error (l->path, errno, "stat: %s", strerror (errno));
  l->dev = st.st_dev;
  l->ino = st.st_ino;
  return 0;
}

/* Open the format on the layer's io and fill the layer's info. */
static int
layer_start (struct layer *l, const struct format_ops *ops, unsigned fflags)
{
  uint64_t alloc = 0;
  int r;

  r = ops->open (l->io, fflags, &l->st);
  if (r < 0)
    return r;
  l->ops = ops;
  memset (&l->info, 0, sizeof l->info);
  l->info.struct_size = sizeof l->info;
  ops->describe (l->st, &l->info);
  l->info.format = ops->name;
  l->info.filename = l->path;
  if (l->io->ops->allocated != NULL) {
    r = l->io->ops->allocated (l->io, &alloc);
    if (r < 0)
      return r;
  }
  l->info.actual_size = alloc;
  return 0;
}

static void
layer_free (struct layer *l)
{
  if (l->ops != NULL && l->st != NULL)
    l->ops->close (l->st);
  io_close (l->io);
  free (l->path);
  free (l->written_name);
  free (l->backing_path);
  memset (l, 0, sizeof *l);
}

static int
chain_open_top (struct chain *c, const char *path,
                const struct chain_policy *p)
{
  struct layer *l = &c->layers[0];
  const struct format_ops *ops = NULL;
  unsigned fflags = p->describe_only ? FMT_OPEN_DESCRIBE : 0;
  int r;

  l->path = strdup (path);
  if (l->path == NULL)
    return set_image_error (path, ENOMEM, "out of memory");
  c->n = 1;
  r = io_open_file (path, p->writable ? IO_WRITE : 0, &l->io);
  if (r < 0)
    return r;
  if (p->lock
      && (r = io_lock (l->io, path,
                       p->writable ? IO_LOCK_WRITE : IO_LOCK_READ)) < 0)
    return r;
  r = layer_stat (l);
  if (r < 0)
    return r;
  r = top_format (l->io, p->format, &ops);
  if (r < 0)
    return r;
  if (p->writable)
    fflags |= FMT_OPEN_WRITE | (p->repair ? FMT_OPEN_REPAIR : 0);
  return layer_start (l, ops, fflags);
}

/* A loop is the same file twice, whatever its spelling: compare inodes. */
static int
check_loop (const struct chain *c, const struct layer *l)
{
  unsigned i;

  for (i = 0; i + 1 < c->n; i++)
    if (c->layers[i].dev == l->dev && c->layers[i].ino == l->ino)
      return set_image_error (c->layers[c->n - 2].path, ELOOP,
                              "backing chain loop: %s is already in the "
                              "chain as %s", l->path, c->layers[i].path);
  return 0;
}

static int
backing_missing (const struct layer *over, const struct layer *l)
{
  return set_image_error (over->path, ENOENT,
                          "backing file '%s' does not exist (resolved to %s)",
                          l->written_name, l->path);
}

/* Before opening: a name in an image must not make us open a FIFO (the
 * open would block) or a character device (opening some has effects). */
static int
backing_check_type (const struct layer *over, const struct layer *l)
{
  struct stat st;

  if (stat (l->path, &st) < 0) {
    if (errno == ENOENT)
      return backing_missing (over, l);
    return set_image_error (over->path, errno, "backing file '%s': %s",
                            l->path, strerror (errno));
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode))
    return set_image_error (over->path, EINVAL,
                            "backing file '%s' is not a regular file or "
                            "block device", l->path);
  return 0;
}

/* Open the backing file of the last layer as a new last layer. */
static int
chain_open_backing (struct chain *c, unsigned *cap,
                    const struct chain_policy *p, unsigned max_depth)
{
  struct layer *over, *l;
  const struct format_ops *ops = NULL;
  unsigned fflags = p->describe_only ? FMT_OPEN_DESCRIBE : 0;
  int r;

  if (c->n >= max_depth)
    return set_image_error (c->layers[0].path, ELOOP,
                            "chain is deeper than %u layers", max_depth);
  r = chain_grow (c, cap, c->layers[0].path);
  if (r < 0)
    return r;
  over = &c->layers[c->n - 1];
  l = &c->layers[c->n];
  c->n++;
  l->path = strdup (over->backing_path);
  l->written_name = strdup (over->info.backing_filename);
  if (l->path == NULL || l->written_name == NULL)
    return set_image_error (over->path, ENOMEM, "out of memory");
  if (p->n_allowed_dirs > 0) {
    r = backing_confined (over->path, l->path, p->allowed_dirs,
                          p->n_allowed_dirs);
    if (r < 0)
      return r;
  }
  r = backing_check_type (over, l);
  if (r < 0)
    return r;
  r = io_open_file (l->path, 0, &l->io);
  if (r == -ENOENT)
    return backing_missing (over, l);
  if (r < 0)
    return r;
  if (p->n_allowed_dirs > 0) {
    r = backing_confined_fd (over->path, l->path, l->io->fd, p->allowed_dirs,
                             p->n_allowed_dirs);
    if (r < 0)
      return r;
  }
  r = layer_stat (l);
  if (r < 0)
    return r;
  r = check_loop (c, l);
  if (r < 0)
    return r;
  /* After the loop check: a loop through the top would otherwise be
   * reported as our own write lock in the way. */
  if (p->lock && (r = io_lock (l->io, l->path, IO_LOCK_READ)) < 0)
    return r;
  r = backing_format (over, l->io, p->probe, &ops);
  if (r < 0)
    return r;
  return layer_start (l, ops, fflags);
}

/* Check and resolve the last layer's backing name into its backing_path.
 * Returns 1 when there is a backing file to open, 0 when none. */
static int
chain_prepare_backing (struct chain *c, bool follow)
{
  struct layer *l = &c->layers[c->n - 1];
  const char *name = l->info.backing_filename;
  int r;

  if (name == NULL)
    return 0;
  r = backing_name_check (l->path, name);
  if (r < 0)
    return follow ? r : 0;     /* not followed: describe it as written */
  r = backing_resolve (l->path, name, &l->backing_path);
  if (r < 0)
    return r;
  l->info.full_backing_filename = l->backing_path;
  return follow;
}

/* Backing layers share one metadata cache budget, so memory does not grow
 * with the depth of the chain: walks go in offset order and need little. */
static void
limit_caches (struct chain *c)
{
  uint64_t each;
  unsigned i;

  if (c->n < 2)
    return;
  each = CHAIN_BACKING_CACHE_BYTES / (c->n - 1);
  for (i = 1; i < c->n; i++)
    if (c->layers[i].ops->set_cache_limit)
      c->layers[i].ops->set_cache_limit (c->layers[i].st, each);
}

int
chain_open (const char *path, const struct chain_policy *p,
            struct chain **out)
{
  unsigned max_depth = p->max_depth ? p->max_depth : CHAIN_DEFAULT_MAX_DEPTH;
  unsigned cap = 0;
  struct chain *c;
  int r;

  c = calloc (1, sizeof *c);
  if (c == NULL)
    return set_image_error (path, ENOMEM, "out of memory");
  c->locked = p->lock;
  r = chain_grow (c, &cap, path);
  if (r == 0)
    r = chain_open_top (c, path, p);
  while (r == 0) {
    r = chain_prepare_backing (c, !p->no_backing);
    if (r <= 0)
      break;
    if (p->stop_at_missing
        && access (c->layers[c->n - 1].backing_path, F_OK) < 0
        && errno == ENOENT) {
      c->cut = true;
      r = 0;
      break;
    }
    r = chain_open_backing (c, &cap, p, max_depth);
  }
  if (r < 0) {
    chain_close (c);
    return r;
  }
  limit_caches (c);
  *out = c;
  return 0;
}

int
chain_reopen_writable (struct chain *c, unsigned depth)
{
  struct layer *l;
  const struct format_ops *ops;
  dev_t dev;
  ino_t ino;
  int r;

  if (depth >= c->n)
    return set_error (EINVAL, "depth %u is outside the chain (%u layers)",
                      depth, c->n);
  l = &c->layers[depth];
  ops = l->ops;
  dev = l->dev;
  ino = l->ino;
  /* The read-only description goes first: its locks would conflict with
   * the writable one's. */
  ops->close (l->st);
  l->st = NULL;
  l->ops = NULL;
  io_close (l->io);
  l->io = NULL;
  if ((r = io_open_file (l->path, IO_WRITE, &l->io)) < 0
      || (r = layer_stat (l)) < 0)
    return r;
  if (l->dev != dev || l->ino != ino)
    return set_image_error (l->path, ESTALE, "was replaced by another file "
                            "while the job opened it");
  if (c->locked && (r = io_lock (l->io, l->path, IO_LOCK_WRITE)) < 0)
    return r;
  return layer_start (l, ops, FMT_OPEN_WRITE);
}

void
chain_close (struct chain *c)
{
  unsigned i;

  if (c == NULL)
    return;
  /* Backing layers first: an overlay may reference its backing's state. */
  for (i = c->n; i-- > 0;)
    layer_free (&c->layers[i]);
  free (c->layers);
  free (c);
}

/* "@N" with N made of digits only; -1 when name is not of that form. */
static long long
parse_at (const char *name)
{
  long long v = 0;
  const char *s;

  if (name[0] != '@' || name[1] == '\0')
    return -1;
  for (s = name + 1; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    if (v > (LLONG_MAX - 9) / 10)
      return LLONG_MAX;
    v = v * 10 + (*s - '0');
  }
  return v;
}

int
chain_find (struct chain *c, const char *name)
{
  long long at;
  struct stat st;
  unsigned i;

  at = parse_at (name);
  if (at >= 0) {
    if ((unsigned long long) at < c->n)
      return (int) at;
    return set_image_error (name, ENOENT,
                            "not in the backing chain of %s (%u layers)",
                            c->layers[0].path, c->n);
  }
  for (i = 0; i < c->n; i++)
    if (c->layers[i].written_name
        && strcmp (c->layers[i].written_name, name) == 0)
      return (int) i;
  for (i = 0; i < c->n; i++)
    if (strcmp (c->layers[i].path, name) == 0)
      return (int) i;
  if (stat (name, &st) == 0)
    for (i = 0; i < c->n; i++)
      if (c->layers[i].dev == st.st_dev && c->layers[i].ino == st.st_ino)
        return (int) i;
  return set_image_error (name, ENOENT, "not in the backing chain of %s",
                          c->layers[0].path);
}
