/* The commit job (qc_commit_start): libvirt's BlockCommit of layers T..above B into B, then the pointer switches. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "backing-name.h"
#include "internal.h"
#include "job.h"
#include "move.h"
#include "rounding.h"

#define STEP_MAX (64u << 20)
#define RESUME_BUF (1u << 20)       /* views compared at a time */
#define SCAN_MAX 4096u               /* directory entries looked at for
                                        other overlays of B */

struct commit {
  struct chain *c;
  unsigned top, base;                /* depths of T and B in c */
  unsigned flags;
  uint64_t size;                     /* T's virtual size */
  bool resumed;                      /* the switch was done by an earlier run */
  bool rename_up;                    /* see delete_under_active */
  struct chain *tc;                  /* resumed: T's own chain, */
  unsigned tc_base;                  /* B's depth in it */
  struct chain_below below;
  struct backing_reader br;
  struct mover *mv;
};

/* ---- other overlays of B ---- */

/* True when the qcow2 file at path names (dev, ino) as its backing file. */
static bool
names_as_backing (const char *path, dev_t dev, ino_t ino)
{
  struct qc_info info = { .struct_size = sizeof info };
  struct io *io = NULL;
  void *st = NULL;
  bool qcow2 = false, yes = false;
  char *resolved = NULL;
  struct stat sb;

  if (io_open_file (path, 0, &io) < 0 || format_is_qcow2 (io, &qcow2) < 0
      || !qcow2 || qcow2_format.open (io, FMT_OPEN_DESCRIBE, &st) < 0)
    goto out;
  qcow2_format.describe (st, &info);
  if (info.backing_filename && info.backing_filename[0]
      && backing_resolve (path, info.backing_filename, &resolved) == 0
      && stat (resolved, &sb) == 0)
    yes = sb.st_dev == dev && sb.st_ino == ino;
 out:
  if (st)
    qcow2_format.close (st);
  io_close (io);
  free (resolved);
  clear_error ();                    /* unreadable files are not overlays */
  return yes;
}

/* An image in the directory of layer `depth` that is not in the chain and
 * names that layer as its backing file (where qemu-img and libvirt put
 * overlays): 1 with its path in *found, 0 if none. */
static int
find_other_overlay (struct commit *cm, unsigned depth, char **found)
{
  struct layer *l = &cm->c->layers[depth];
  char *copy = strdup (l->path), *dir, *path = NULL;
  struct dirent *de;
  unsigned seen = 0, i;
  DIR *d;
  int r = 0;

  *found = NULL;
  if (copy == NULL)
    return set_error (ENOMEM, "out of memory");
  dir = dirname (copy);
  if ((d = opendir (dir)) == NULL) {
    free (copy);
    return 0;                        /* nothing visible */
  }
  while (r == 0 && (de = readdir (d)) != NULL && seen++ < SCAN_MAX) {
    struct stat sb;
    bool ours = false;
    if (de->d_name[0] == '.' && (de->d_name[1] == '\0'
                                 || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
      continue;
    if (fstatat (dirfd (d), de->d_name, &sb, 0) < 0 || !S_ISREG (sb.st_mode))
      continue;
    for (i = 0; i < cm->c->n; i++)
      ours |= cm->c->layers[i].dev == sb.st_dev
        && cm->c->layers[i].ino == sb.st_ino;
    if (ours)
      continue;
    free (path);
    if (asprintf (&path, "%s/%s", dir, de->d_name) < 0) {
      path = NULL;
      r = set_error (ENOMEM, "out of memory");
    }
    else if (names_as_backing (path, l->dev, l->ino)) {
      *found = path;
      path = NULL;
      r = 1;
    }
  }
  closedir (d);
  free (path);
  free (copy);
  return r;
}

/* Writing B corrupts any other image built on it: refuse. */
static int
check_other_overlays (struct commit *cm)
{
  char *other;
  int r = find_other_overlay (cm, cm->base, &other);

  if (r > 0)
    r = set_image_error (cm->c->layers[cm->base].path, EBUSY, "is also the "
                         "backing file of %s; committing into it would "
                         "change that image (--force to commit anyway)",
                         other);
  free (other);
  return r;
}

/* ---- the job ---- */

static int
commit_step (struct qc_job *j, uint64_t budget, uint64_t *moved)
{
  struct commit *cm = j->priv;

  return cm->mv ? mover_job_step (cm->mv, j, budget, moved) : 1;
}

/* Make layer `over` name B, durably (one header write, then fsync). */
static int
switch_to_base (struct commit *cm, unsigned over)
{
  struct layer *o = &cm->c->layers[over], *b = &cm->c->layers[cm->base];
  char *name = NULL;
  int r = chain_backing_name (cm->c, over, cm->base, &name);

  if (r == 0)
    r = o->ops->set_backing (o->st, name, b->ops->name);
  free (name);
  return r;
}

static int
fsync_dir_of (const char *path)
{
  char *copy = strdup (path);
  int r;

  if (copy == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_fsync_dir (dirname (copy));
  free (copy);
  return r;
}

static int
delete_one (struct layer *l)
{
  if (unlink (l->path) < 0 && errno != ENOENT)
    return set_image_error (l->path, errno, "unlink: %m");
  return fsync_dir_of (l->path);
}

/* --delete: the files the commit made invalid, [first, stop) of chain c
 * (B at stop), after the switch is durable, each unlink durable before
 * the next, bottom up: stopped halfway, T and the layers just below it
 * remain (the lowest naming a file already deleted), and a rerun
 * recognises them by T. */
static int
delete_layers (struct chain *c, unsigned first, unsigned stop)
{
  unsigned i;
  int r = 0;

  for (i = stop; i-- > first && r == 0;)
    r = delete_one (&c->layers[i]);
  return r;
}

/* stat of the directory holding path. */
static bool
stat_dir_of (const char *path, struct stat *st)
{
  char *copy = strdup (path);
  bool ok = copy && stat (dirname (copy), st) == 0;

  free (copy);
  return ok;
}

static bool
same_dir (const char *a, const char *b)
{
  struct stat sa, sb;

  return stat_dir_of (a, &sa) && stat_dir_of (b, &sb)
    && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Unlink layers 0..last top down: ACTIVE's path goes first, whole. */
static int
delete_top_down (struct commit *cm, unsigned last)
{
  unsigned i;
  int r = 0;

  for (i = 0; i <= last && r == 0; i++)
    r = delete_one (&cm->c->layers[i]);
  return r;
}

/* --delete when T is ACTIVE (layers 0..base-1 go). A layer cannot leave
 * ACTIVE's chain and be unlinked in one step: between the two a kill
 * leaves either a broken chain or a file no rerun can find. A rename can:
 * the layer just above B is emptied (B holds ACTIVE's whole view, so
 * ACTIVE reads the same), then renamed over the layer above it, and so on
 * up over ACTIVE, which is then unlinked. At every moment ACTIVE's chain
 * is whole, reads the same, and holds every file left to delete. Where
 * that cannot be done (see can_rename_up), or a rename crosses file
 * systems, the layers are unlinked top down. */
static int
delete_under_active (struct commit *cm)
{
  struct layer *e = &cm->c->layers[cm->base - 1];
  uint64_t size = MAX (e->info.virtual_size, cm->size);
  unsigned k;
  bool abs_name = false;
  int r = 0;

  if (!cm->rename_up)
    return delete_top_down (cm, cm->base - 1);
  /* The emptied layer names B from every directory it passes through. */
  for (k = 0; k + 1 < cm->base; k++)
    abs_name |= !same_dir (cm->c->layers[k].path, e->path);
  if (abs_name) {
    char *full = realpath (cm->c->layers[cm->base].path, NULL);
    if (full == NULL)
      return set_image_error (cm->c->layers[cm->base].path, errno,
                              "realpath: %m");
    r = e->ops->set_backing (e->st, full, cm->c->layers[cm->base].ops->name);
    free (full);
  }
  /* Grown first (the new part reads as zeroes, as it did past its old
   * end), then all of it unmapped: past its old end it must read B too
   * once it stands in for a longer layer. */
  if (r == 0 && e->info.virtual_size < size)
    r = e->ops->resize (e->st, size);
  if (r == 0)
    r = e->ops->unmap (e->st, 0, size);
  if (r == 0)
    r = e->ops->flush (e->st);
  for (k = cm->base - 1; k >= 1 && r == 0; k--) {
    const char *from = cm->c->layers[k].path, *to = cm->c->layers[k - 1].path;
    if (rename (from, to) < 0) {
      if (errno == EXDEV)
        return delete_top_down (cm, k);
      return set_image_error (from, errno, "rename over %s: %m", to);
    }
    if ((r = fsync_dir_of (to)) == 0 && !same_dir (from, to))
      r = fsync_dir_of (from);
  }
  return r < 0 ? r : delete_one (&cm->c->layers[0]);
}

/* Whether the layer above B can be emptied and renamed up: a plain qcow2
 * file of one name that the writer accepts, no other image built on it
 * (it would read B instead), the layers above in directories of its file
 * system. */
static bool
can_rename_up (struct commit *cm)
{
  struct layer *e = &cm->c->layers[cm->base - 1];
  struct stat st, ed, d;
  char *other = NULL;
  unsigned k;
  int r;

  if (e->ops == &raw_format || access (e->path, W_OK) < 0
      || (e->info.flags & (QC_INFO_BITMAPS | QC_INFO_DIRTY | QC_INFO_CORRUPT))
      || lstat (e->path, &st) < 0 || !S_ISREG (st.st_mode)
      || st.st_nlink != 1 || !stat_dir_of (e->path, &ed))
    return false;
  for (k = 0; k + 1 < cm->base; k++)
    if (!stat_dir_of (cm->c->layers[k].path, &d) || d.st_dev != ed.st_dev)
      return false;
  r = find_other_overlay (cm, cm->base - 1, &other);
  free (other);
  clear_error ();
  return r == 0;
}

static int
finish_resumed (struct qc_job *j, struct commit *cm)
{
  int r = 0;

  if (cm->flags & QC_COMMIT_DELETE)
    r = delete_layers (cm->tc, 0, cm->tc_base);
  if (r == 0)
    job_set_result (j, "%s: already committed into %s by an earlier run%s; "
                    "%s is the image to use", cm->tc->layers[0].path,
                    cm->c->layers[cm->base].path,
                    (cm->flags & QC_COMMIT_DELETE) ? "; deleted" : "",
                    cm->c->layers[0].path);
  return r;
}

/* The image above a short T reads zeroes past T's end; once it names B it
 * reads B there: B must read zeroes there too. (Before the switch that
 * part of B is hidden by T's end.) */
static int
zero_past_top (struct commit *cm)
{
  struct layer *b = &cm->c->layers[cm->base];
  uint64_t osize, end;

  if (cm->top == 0)
    return 0;
  osize = cm->c->layers[cm->top - 1].info.virtual_size;
  end = osize < b->info.virtual_size ? osize : b->info.virtual_size;
  return end > cm->size ? b->ops->zero (b->st, cm->size, end - cm->size) : 0;
}

static int
commit_finish (struct qc_job *j, bool ok)
{
  struct commit *cm = j->priv;
  struct layer *b = &cm->c->layers[cm->base];
  bool keep = cm->flags & QC_COMMIT_KEEP_ACTIVE;
  struct layer *a = &cm->c->layers[0];
  int r = 0, f;

  if (cm->resumed)
    return ok ? finish_resumed (j, cm) : 0;
  if (cm->mv)
    r = mover_finish (cm->mv);
  if (ok && r == 0)
    r = zero_past_top (cm);
  /* B durable before anything points to it; also when stopping early. */
  f = b->ops->flush (b->st);
  if (!ok || r < 0)
    return r;
  if ((r = f) < 0)
    return r;
  if (cm->top > 0)
    r = switch_to_base (cm, cm->top - 1);
  else if (keep) {
    /* ACTIVE names B first: emptying it then changes nothing it reads. */
    r = switch_to_base (cm, 0);
    if (r == 0)
      r = a->ops->unmap (a->st, 0, a->info.virtual_size);
    if (r == 0)
      r = a->ops->flush (a->st);
  }
  if (r == 0 && (cm->flags & QC_COMMIT_DELETE))
    r = cm->top == 0 && !keep ? delete_under_active (cm)
      : delete_layers (cm->c, keep ? 1 : cm->top, cm->base);
  if (r < 0)
    return r;
  if (cm->top == 0 && !keep)
    job_set_result (j, "%s: committed; %s is now the image to use",
                    a->path, b->path);
  else if (keep)
    job_set_result (j, "%s: committed into %s; %s is empty and names it",
                    a->path, b->path, a->path);
  else if (cm->top == 1)
    job_set_result (j, "%s: committed into %s; %s now names it",
                    cm->c->layers[cm->top].path, b->path, a->path);
  else
    job_set_result (j, "%s: committed into %s; %s now names it; %s is "
                    "still the image to use", cm->c->layers[cm->top].path,
                    b->path, cm->c->layers[cm->top - 1].path, a->path);
  return 0;
}

static void
commit_free (void *priv)
{
  struct commit *cm = priv;

  if (cm == NULL)
    return;
  mover_free (cm->mv);
  chain_close (cm->tc);
  chain_close (cm->c);
  free (cm);
}

static const struct job_ops commit_ops = {
  .step = commit_step,
  .finish = commit_finish,
  .free = commit_free,
};

/* ---- set-up ---- */

/* An earlier run is taken as done only if B (as ACTIVE's chain reads it)
 * reads as T where the layers from T down to above B hold anything, or,
 * when --delete stopped halfway removed the lower of them, where those
 * still there hold anything: 0 yes, 1 no, or an error. A T that merely
 * shares a backing file with ACTIVE's chain (another overlay of a member)
 * is not taken for a committed one (and never deleted). */
static int
resume_holds (struct commit *cm, uint64_t *seen)
{
  struct chain *tc = cm->tc;
  uint64_t size = tc->layers[0].info.virtual_size, off = 0;
  char *a = malloc (RESUME_BUF), *b = malloc (RESUME_BUF);
  int r = 0;

  if (a == NULL || b == NULL)
    r = set_error (ENOMEM, "out of memory");
  while (r == 0 && off < size) {
    struct qc_extent e;
    size_t n;
    if ((r = chain_block_status_above (tc, 0, cm->tc_base, off,
                                       MIN (size - off, (uint64_t) 1 << 30),
                                       &e)) < 0)
      break;
    if (e.length == 0) {
      r = set_image_error (tc->layers[0].path, EIO, "empty extent at %"
                           PRIu64, off);
      break;
    }
    if (!e.present) {
      off += e.length;
      continue;
    }
    n = (size_t) MIN (e.length, (uint64_t) RESUME_BUF);
    if ((r = chain_read (tc, 0, a, n, off)) < 0
        || (r = chain_read (cm->c, cm->base, b, n, off)) < 0)
      break;
    if (memcmp (a, b, n) != 0)
      r = 1;
    *seen += n;
    off += n;
  }
  free (a);
  free (b);
  return r;
}

/* T was given but is not in ACTIVE's chain: an earlier run may have done
 * the switch (then T's own chain reaches B through layers no longer in
 * ACTIVE's chain) and been stopped before --delete. */
static int
try_resume (struct commit *cm, const char *top, const char *base,
            const struct chain_policy *pol)
{
  struct chain_policy p = *pol;
  uint64_t seen = 0;
  unsigned k, i;
  int r, b;

  if (access (top, F_OK) < 0)
    return -ENOENT;
  p.format = NULL;
  p.stop_at_missing = true;
  if ((r = chain_open (top, &p, &cm->tc)) < 0)
    return r;
  b = base ? chain_find (cm->c, base) : (int) cm->c->n - 1;
  if (base == NULL && (cm->flags & QC_COMMIT_SHALLOW) && cm->tc->n > 1)
    b = -1;
  for (k = 1; k < cm->tc->n; k++) {
    struct layer *l = &cm->tc->layers[k];
    if (b < 0 && k == 1) {
      for (i = 0; i < cm->c->n; i++)
        if (cm->c->layers[i].dev == l->dev && cm->c->layers[i].ino == l->ino)
          b = (int) i;
    }
    if (b >= 0 && l->dev == cm->c->layers[b].dev
        && l->ino == cm->c->layers[b].ino)
      break;
  }
  /* Not reaching B is only a stopped --delete's doing when the chain
   * ends at a missing file (deleted bottom up, so all of them are to go). */
  if (b < 0 || (k == cm->tc->n
                && !(cm->tc->cut && (cm->flags & QC_COMMIT_DELETE))))
    return -ENOENT;
  /* Everything to delete must be out of ACTIVE's chain. */
  for (i = 0; i < k; i++) {
    unsigned a;
    for (a = 0; a < cm->c->n; a++)
      if (cm->c->layers[a].dev == cm->tc->layers[i].dev
          && cm->c->layers[a].ino == cm->tc->layers[i].ino)
        return -ENOENT;
  }
  cm->tc_base = k;
  cm->base = (unsigned) b;
  if ((r = resume_holds (cm, &seen)) != 0)
    return r < 0 ? r : -ENOENT;
  /* A cut chain proves nothing by itself: what remains of it must hold
   * something, and B the same. */
  if (k == cm->tc->n && seen == 0)
    return -ENOENT;
  cm->resumed = true;
  clear_error ();
  return 0;
}

static int
find_layers (struct commit *cm, const char *top, const char *base,
             const struct chain_policy *pol)
{
  const char *active = cm->c->layers[0].path;
  int t = 0, b;

  if ((cm->flags & QC_COMMIT_SHALLOW) && base)
    return set_error (EINVAL, "--shallow and --base cannot be combined");
  if (top && (t = chain_find (cm->c, top)) < 0) {
    int e = t;
    if (try_resume (cm, top, base, pol) == 0)
      return 0;
    chain_close (cm->tc);
    cm->tc = NULL;
    set_image_error (top, -e, "not in the backing chain of %s", active);
    return e;
  }
  if ((cm->flags & QC_COMMIT_KEEP_ACTIVE) && t != 0)
    return set_error (EINVAL, "--keep-active needs the top to be the active "
                      "image %s", active);
  if ((unsigned) t + 1 >= cm->c->n)
    return set_image_error (cm->c->layers[t].path, EINVAL, "has no backing "
                            "file: there is nothing to commit into");
  if (base == NULL)
    b = (cm->flags & QC_COMMIT_SHALLOW) ? t + 1 : (int) cm->c->n - 1;
  else if ((b = chain_find (cm->c, base)) < 0)
    return b;
  if (b <= t)
    return set_image_error (cm->c->layers[b].path, EINVAL, "is not below %s "
                            "in the backing chain of %s",
                            cm->c->layers[t].path, active);
  cm->top = (unsigned) t;
  cm->base = (unsigned) b;
  return 0;
}

/* Open what the job writes, before anything moves: a refusal (locks,
 * corrupt images, persistent bitmaps) costs nothing then. */
static int
open_targets (struct commit *cm)
{
  bool keep = cm->flags & QC_COMMIT_KEEP_ACTIVE;
  struct layer *b;
  int r;

  if (!(cm->flags & QC_COMMIT_FORCE) && (r = check_other_overlays (cm)) < 0)
    return r;
  if (keep && cm->c->layers[0].ops == &raw_format)
    return set_image_error (cm->c->layers[0].path, EINVAL, "is raw: it "
                            "cannot name a backing file (--keep-active)");
  if ((r = chain_reopen_writable (cm->c, cm->base)) < 0
      || (cm->top > 0 && (r = chain_reopen_writable (cm->c, cm->top - 1)) < 0)
      || (keep && (r = chain_reopen_writable (cm->c, 0)) < 0))
    return r;
  /* --delete with T = ACTIVE empties the layer above B (then renames it
   * up over the rest). */
  if (cm->top == 0 && !keep && (cm->flags & QC_COMMIT_DELETE)
      && cm->base > 1 && (cm->rename_up = can_rename_up (cm))
      && (r = chain_reopen_writable (cm->c, cm->base - 1)) < 0)
    return r;
  b = &cm->c->layers[cm->base];
  if (cm->base + 1 < cm->c->n) {
    chain_backing_reader (cm->c, cm->base, &cm->below, &cm->br);
    b->ops->set_backing_reader (b->st, &cm->br);
  }
  /* Grown first: the new part reads as zeroes, as it did past B's end. */
  if (b->info.virtual_size < cm->size) {
    if ((r = b->ops->resize (b->st, cm->size)) < 0)
      return r;
    b->info.virtual_size = cm->size;
  }
  return 0;
}

static int
start (struct commit *cm, const char *active, const char *base,
       const char *top, const struct qc_open_opts *opts)
{
  struct chain_policy pol;
  struct layer *b;
  int r;

  opts_to_policy (opts, &pol);
  pol.writable = false;
  pol.no_backing = false;
  pol.describe_only = false;
  if ((r = chain_open (active, &pol, &cm->c)) < 0
      || (r = find_layers (cm, top, base, &pol)) < 0)
    return r;
  if (cm->resumed)
    return 0;
  cm->size = cm->c->layers[cm->top].info.virtual_size;
  if ((r = open_targets (cm)) < 0)
    return r;
  b = &cm->c->layers[cm->base];
  {
    struct move_params p = {
      .src = cm->c, .from = cm->top, .stop = cm->base, .size = cm->size,
      .zeroes = true, .flags = cm->flags & QC_JOB_IO_FLAGS,
    };
    struct move_dest d = {
      .name = b->path, .ops = b->ops, .st = b->st, .io = b->io,
      .fd = b->io->fd,
      .under = true, .as_is = true,
    };
    r = mover_new (&p, &d, &cm->mv);
  }
  return r;
}

struct qc_job *
qc_commit_start (const char *active, const char *base, const char *top,
                 uint64_t bandwidth, unsigned flags,
                 const struct qc_open_opts *opts)
{
  struct commit *cm;
  struct qc_job *j = NULL;
  int r;

  clear_error ();
  if (active == NULL || *active == '\0') {
    public_error (set_error (EINVAL, "commit needs the active image"));
    return NULL;
  }
  if (flags & ~(QC_COMMIT_SHALLOW | QC_COMMIT_DELETE | QC_COMMIT_KEEP_ACTIVE
                | QC_COMMIT_FORCE | QC_JOB_IO_FLAGS)) {
    public_error (set_error (EINVAL, "unknown commit flags 0x%x", flags));
    return NULL;
  }
  if (job_check_io_flags (flags) < 0) {
    public_error (-EINVAL);
    return NULL;
  }
  if ((cm = calloc (1, sizeof *cm)) == NULL) {
    public_error (set_error (ENOMEM, "out of memory"));
    return NULL;
  }
  cm->flags = flags;
  if ((r = start (cm, active, base, top, opts)) < 0) {
    commit_free (cm);
    public_error (r);
    return NULL;
  }
  if ((r = job_new (QC_JOB_COMMIT, &commit_ops, cm, bandwidth, &j)) < 0) {
    public_error (r);
    return NULL;
  }
  j->end = cm->mv ? mover_planned (cm->mv) : 0;
  j->max_request = STEP_MAX;
  return j;
}
