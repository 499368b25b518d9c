/* The copy job (qc_copy_start): libvirt's BlockRebase COPY of a chain's guest view into a new or reused DEST. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "errors.h"
#include "iszero.h"
#include "rounding.h"
#include "move.h"
#include "backing-name.h"
#include "internal.h"
#include "job.h"
#include "lock.h"

#define REQ_SIZE (1u << 20)          /* reads checking a reused DEST */
#define STEP_MAX (64u << 20)         /* unthrottled step: an abort is seen
                                        once per step */

struct copy {
  struct chain *src;
  unsigned flags;
  bool under;                        /* DEST has a view below: zeroes are written */
  bool compress;
  uint64_t size;
  char *dest, *dir, *tmp;            /* tmp: a new DEST's name until renamed */
  struct chain *dchain;              /* a reused DEST, opened writable */
  struct io *dio;                    /* DEST's io (owned unless dchain) */
  const struct format_ops *dops;
  void *dst;                         /* DEST's format state (owned unless dchain) */
  struct chain_below below;
  struct backing_reader br;
  struct mover *mv;
};

/* Errors about the temporary file are about DEST to the user. */
static int
name_dest (struct copy *cp, int r)
{
  const char *msg = qc_get_error ();
  size_t n = cp->tmp ? strlen (cp->tmp) : 0;
  char *rest;

  if (r >= 0 || n == 0 || msg == NULL || strncmp (msg, cp->tmp, n) != 0
      || strncmp (msg + n, ": ", 2) != 0 || (rest = strdup (msg + n + 2)) == NULL)
    return r;
  set_image_error (cp->dest, -r, "%s", rest);
  free (rest);
  return r;
}

static int
copy_step (struct qc_job *j, uint64_t budget, uint64_t *moved)
{
  struct copy *cp = j->priv;

  return name_dest (cp, mover_job_step (cp->mv, j, budget, moved));
}

/* ---- finishing ---- */

/* Rename, never replacing a DEST that appeared meanwhile. */
static int
publish (struct copy *cp)
{
  if (renameat2 (AT_FDCWD, cp->tmp, AT_FDCWD, cp->dest, RENAME_NOREPLACE) < 0) {
    int e = errno;
    if (e != EINVAL && e != ENOSYS)
      return set_image_error (cp->dest, e, e == EEXIST ? "already exists; "
                              "qchain never overwrites an image" : "rename: %m");
    /* No RENAME_NOREPLACE on this file system: link fails on EEXIST too. */
    if (link (cp->tmp, cp->dest) < 0)
      return set_image_error (cp->dest, errno, errno == EEXIST ? "already "
                              "exists; qchain never overwrites an image"
                              : "link: %m");
    unlink (cp->tmp);
  }
  free (cp->tmp);
  cp->tmp = NULL;
  return io_fsync_dir (cp->dir);
}

static void
close_dest (struct copy *cp)
{
  if (cp->dchain)
    chain_close (cp->dchain);
  else {
    if (cp->dst)
      cp->dops->close (cp->dst);
    if (cp->dio)
      io_close (cp->dio);
  }
  cp->dchain = NULL;
  cp->dst = NULL;
  cp->dio = NULL;
}

static int
copy_finish (struct qc_job *j, bool ok)
{
  struct copy *cp = j->priv;
  int r = 0;

  if (cp->mv)
    r = mover_finish (cp->mv);
  /* A reused DEST is left consistent even when the copy stops early. */
  if (cp->dst && (ok || cp->tmp == NULL)) {
    int f = cp->dops->flush (cp->dst);
    if (ok && r == 0)
      r = f;
  }
  close_dest (cp);
  if (ok && r == 0 && cp->tmp)
    r = publish (cp);
  if (cp->tmp) {
    unlink (cp->tmp);
    free (cp->tmp);
    cp->tmp = NULL;
  }
  if (ok && r == 0)
    job_set_result (j, "%s: %" PRIu64 " bytes copied", cp->dest, j->cur);
  return r;
}

static void
copy_free (void *priv)
{
  struct copy *cp = priv;

  if (cp == NULL)
    return;
  mover_free (cp->mv);               /* before DEST, which it writes */
  close_dest (cp);
  if (cp->tmp) {
    unlink (cp->tmp);
    free (cp->tmp);
  }
  chain_close (cp->src);
  free (cp->dest);
  free (cp->dir);
  free (cp);
}

static const struct job_ops copy_ops = {
  .step = copy_step,
  .finish = copy_finish,
  .free = copy_free,
};

/* ---- DEST ---- */

static int
new_params (struct copy *cp, const char *options, struct create_params *p)
{
  struct layer *l = &cp->src->layers[0];
  int r;

  bool qcow2 = strcmp (l->info.format, "qcow2") == 0;

  memset (p, 0, sizeof *p);
  p->size = cp->size;
  /* Like the source: its cluster size, compat and subclusters (qemu-img
   * convert would take 64 KiB, 1.1 and none), unless -o says otherwise. */
  if (qcow2) {
    p->cluster_size = l->info.cluster_size;
    p->extended_l2 = (l->info.flags & QC_INFO_EXTENDED_L2) != 0;
  }
  if ((r = parse_create_options (cp->dest, options, p)) < 0)
    return r;
  if (cp->flags & QC_COPY_COMPRESS_ZSTD)
    p->zstd = true;
  /* An inherited compat=0.10 gives way to what only 1.1 can hold. */
  if (p->version == 0 && qcow2)
    p->version = p->zstd || p->extended_l2 || p->lazy_refcounts
      || (p->refcount_bits && p->refcount_bits != 16)
      ? 3 : l->info.qcow2_version;
  if (cp->flags & QC_COPY_SHALLOW && cp->src->n > 1) {
    char *name = NULL;
    /* As SRC wrote it when that resolves the same from DEST's directory,
     * else relative from there. */
    if ((r = backing_name_from (cp->dir, cp->src, 1, &name)) < 0)
      return r;
    p->backing = name;
    p->backing_format = cp->src->layers[1].ops->name;
  }
  return 0;
}

/* Create DEST under a temporary name beside it, to be renamed when done. */
static int
create_dest (struct copy *cp, const char *options)
{
  struct create_params p;
  char *b = strdup (cp->dest);
  int r, tries;

  if (b == NULL)
    return set_error (ENOMEM, "out of memory");
  memset (&p, 0, sizeof p);
  p.size = cp->size;
  r = cp->dops == &raw_format ? 0 : new_params (cp, options, &p);
  for (tries = 0; r == 0 && tries < 100; tries++) {
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
      rnd ^= (uint32_t) getpid () * 2654435761u + (uint32_t) tries;
    free (cp->tmp);
    if (asprintf (&cp->tmp, "%s/.%s.qchain-%08" PRIx32, cp->dir, basename (b),
                  rnd) < 0) {
      cp->tmp = NULL;
      r = set_error (ENOMEM, "out of memory");
      break;
    }
    r = io_open_file (cp->tmp, IO_WRITE | IO_CREATE, &cp->dio);
    if (r != -EEXIST)
      break;
    clear_error ();
    r = 0;
  }
  if (r == 0 && cp->dio == NULL)
    r = set_image_error (cp->dest, EEXIST, "no free temporary name");
  if (r < 0) {
    free (cp->tmp);                  /* not ours: nothing to unlink */
    cp->tmp = NULL;
  }
  if (r == 0)
    r = io_lock (cp->dio, cp->tmp, IO_LOCK_WRITE);
  if (r == 0)
    r = cp->dops->create (cp->dio, &p);
  if (r == 0)
    r = cp->dops->open (cp->dio, FMT_OPEN_WRITE | FMT_OPEN_UNORDERED,
                        &cp->dst);
  free ((char *) p.backing);
  free (b);
  return name_dest (cp, r);
}

/* A reused DEST without --shallow must read as zeroes everywhere. */
static int
check_dest_zero (struct copy *cp)
{
  struct qc_extent e;
  uint64_t off, pos, n;
  char *buf = NULL;
  int r = 0;

  for (off = 0; off < cp->size && r == 0; off += e.length) {
    if ((r = chain_block_status (cp->dchain, 0, off, cp->size - off, &e)) < 0)
      break;
    if (e.zero || !e.data)
      continue;
    /* Allocated but maybe zero (a preallocated raw file): read it. */
    if (buf == NULL && (buf = malloc (REQ_SIZE)) == NULL)
      r = set_error (ENOMEM, "out of memory");
    for (pos = 0; r == 0 && pos < e.length; pos += n) {
      n = MIN (e.length - pos, (uint64_t) REQ_SIZE);
      r = chain_read (cp->dchain, 0, buf, n, off + pos);
      if (r == 0 && !is_zero (buf, n))
        r = set_image_error (cp->dest, ENOTEMPTY, "is not empty (data at "
                             "offset %" PRIu64 "); a reused DEST must read as "
                             "zeroes unless --shallow", off + pos);
    }
  }
  free (buf);
  return r;
}

/* Open an existing DEST in place; its format comes from its header and raw
 * is never probed: without the qcow2 magic the caller must say raw. */
static int
reuse_dest (struct copy *cp, const struct qc_open_opts *opts)
{
  struct chain_policy pol;
  struct io *io = NULL;
  bool qcow2 = false;
  uint64_t dsize;
  struct stat sb;
  unsigned i;
  int r;

  if (stat (cp->dest, &sb) < 0)
    return set_image_error (cp->dest, errno, "%m");
  for (i = 0; i < cp->src->n; i++)
    if (cp->src->layers[i].dev == sb.st_dev
        && cp->src->layers[i].ino == sb.st_ino)
      return set_image_error (cp->dest, EINVAL, "is %s: it cannot be the "
                              "copy's DEST", i ? "in SRC's backing chain"
                              : "SRC itself");
  opts_to_policy (opts, &pol);
  pol.no_backing = false;
  pol.describe_only = false;
  if (!(cp->flags & QC_COPY_RAW)) {
    r = io_open_file (cp->dest, 0, &io);
    if (r == 0)
      r = format_is_qcow2 (io, &qcow2);
    io_close (io);
    if (r < 0)
      return r;
    if (!qcow2)
      return set_image_error (cp->dest, EINVAL, "has no qcow2 magic; a raw "
                              "DEST is never probed: say it is raw (--raw)");
  }
  pol.format = qcow2 ? "qcow2" : "raw";
  pol.writable = true;
  /* With --shallow DEST's own backing chain is not read: trusted. */
  pol.no_backing = (cp->flags & QC_COPY_SHALLOW) != 0;
  if ((r = chain_open (cp->dest, &pol, &cp->dchain)) < 0)
    return r;
  dsize = cp->dchain->layers[0].info.virtual_size;
  if (dsize < cp->size)
    return set_image_error (cp->dest, EINVAL, "is smaller (%" PRIu64 " bytes) "
                            "than the source (%" PRIu64 ")", dsize, cp->size);
  cp->dops = cp->dchain->layers[0].ops;
  cp->dst = cp->dchain->layers[0].st;
  cp->dio = cp->dchain->layers[0].io;
  if (!(cp->flags & QC_COPY_SHALLOW))
    return check_dest_zero (cp);
  cp->under = true;
  return 0;
}

static int
check_flags (struct copy *cp, const char *dest_options)
{
  unsigned f = cp->flags;
  const char *src = cp->src->layers[0].path;
  bool raw = f & QC_COPY_RAW;

  if (f & ~(QC_COPY_SHALLOW | QC_COPY_REUSE_EXT | QC_COPY_RAW
            | QC_COPY_COMPRESS_ZLIB | QC_COPY_COMPRESS_ZSTD | QC_COPY_QCOW2
            | QC_JOB_IO_FLAGS))
    return set_error (EINVAL, "unknown copy flags 0x%x", f);
  if (job_check_io_flags (f) < 0)
    return -EINVAL;
  if ((f & QC_COPY_QCOW2) && raw)
    return set_error (EINVAL, "DEST cannot be both raw and qcow2");
  if ((f & QC_COPY_COMPRESS_ZLIB) && (f & QC_COPY_COMPRESS_ZSTD))
    return set_error (EINVAL, "compress with zlib or zstd, not both");
  /* Reused, a raw DEST holds the backing's view already (libvirt's
   * REUSE_EXT|SHALLOW|COPY_RAW); new, it would have no backing. */
  if ((f & QC_COPY_SHALLOW) && raw && cp->src->n > 1
      && !(f & QC_COPY_REUSE_EXT))
    return set_image_error (src, EINVAL, "has a backing file: a shallow copy "
                            "into a raw DEST would lose it");
  /* A new DEST takes SRC's format unless told otherwise. */
  if (!raw && !(f & (QC_COPY_REUSE_EXT | QC_COPY_QCOW2))
      && strcmp (cp->src->layers[0].info.format, "raw") == 0)
    raw = true;
  if (cp->compress && raw)
    return set_image_error (cp->dest, EINVAL, "compression needs a qcow2 "
                            "DEST, not raw");
  if (dest_options && *dest_options && (raw || (f & QC_COPY_REUSE_EXT)))
    return set_image_error (cp->dest, EINVAL, "creation options (-o) apply "
                            "to a new qcow2 DEST only");
  cp->dops = raw ? &raw_format : &qcow2_format;
  return 0;
}

/* DEST: created (new) or opened in place, then the write set-up. */
static int
setup_dest (struct copy *cp, const char *dest_options,
            const struct qc_open_opts *opts)
{
  struct stat sb;
  int r;

  if (!(cp->flags & QC_COPY_REUSE_EXT)) {
    if (lstat (cp->dest, &sb) == 0)
      return set_image_error (cp->dest, EEXIST, "already exists (reuse it "
                              "with --reuse-existing)");
    r = create_dest (cp, dest_options);
  }
  else
    r = reuse_dest (cp, opts);
  if (r < 0)
    return r;
  /* Copy-on-write in DEST reads SRC's backing view: DEST's backing holds
   * the same (created so, or trusted when reused, as libvirt does). */
  if (cp->under && cp->src->n > 1) {
    chain_backing_reader (cp->src, 0, &cp->below, &cp->br);
    cp->dops->set_backing_reader (cp->dst, &cp->br);
  }
  return 0;
}

/* Deep: the whole view; shallow: what the top layer holds, its zero
 * clusters included (they hide the backing file's data). */
static int
start_mover (struct copy *cp)
{
  bool shallow = cp->flags & QC_COPY_SHALLOW;
  struct move_params p = {
    .src = cp->src, .from = 0, .stop = shallow ? 1 : cp->src->n,
    .size = cp->size, .zeroes = shallow,
    .flags = cp->flags & QC_JOB_IO_FLAGS,
  };
  struct move_dest d = {
    .name = cp->dest, .ops = cp->dops, .st = cp->dst, .io = cp->dio,
    .fd = cp->dio ? cp->dio->fd : -1, .under = cp->under,
    .compress = cp->compress, .fresh = cp->tmp != NULL,
  };

  return name_dest (cp, mover_new (&p, &d, &cp->mv));
}

static int
start (struct copy *cp, const char *src, const char *dest,
       const char *dest_options, const struct qc_open_opts *opts)
{
  struct chain_policy pol;
  char *d;
  int r;

  opts_to_policy (opts, &pol);
  pol.writable = false;
  pol.no_backing = false;
  pol.describe_only = false;
  if ((r = chain_open (src, &pol, &cp->src)) < 0)
    return r;
  cp->size = cp->src->layers[0].info.virtual_size;
  cp->compress = cp->flags & (QC_COPY_COMPRESS_ZLIB | QC_COPY_COMPRESS_ZSTD);
  cp->under = (cp->flags & QC_COPY_SHALLOW) && cp->src->n > 1;
  if ((cp->dest = strdup (dest)) == NULL || (d = strdup (dest)) == NULL)
    return set_error (ENOMEM, "out of memory");
  cp->dir = realpath (dirname (d), NULL);
  free (d);
  if (cp->dir == NULL)
    return set_image_error (dest, errno, "its directory: %m");
  if ((r = check_flags (cp, dest_options)) < 0
      || (r = setup_dest (cp, dest_options, opts)) < 0)
    return r;
  return start_mover (cp);
}

struct qc_job *
qc_copy_start (const char *src, const char *dest, const char *dest_options,
               uint64_t bandwidth, unsigned flags,
               const struct qc_open_opts *opts)
{
  struct copy *cp;
  struct qc_job *j = NULL;
  int r;

  clear_error ();
  if (src == NULL || dest == NULL || *src == '\0' || *dest == '\0') {
    public_error (set_error (EINVAL, "copy needs SRC and DEST"));
    return NULL;
  }
  if ((cp = calloc (1, sizeof *cp)) == NULL) {
    public_error (set_error (ENOMEM, "out of memory"));
    return NULL;
  }
  cp->flags = flags;
  r = start (cp, src, dest, dest_options, opts);
  if (r < 0) {
    copy_free (cp);
    public_error (r);
    return NULL;
  }
  if ((r = job_new (QC_JOB_COPY, &copy_ops, cp, bandwidth, &j)) < 0) {
    public_error (r);
    return NULL;
  }
  j->end = mover_planned (cp->mv);
  j->max_request = STEP_MAX;
  return j;
}
