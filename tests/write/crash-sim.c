/* crash-sim: crash simulation of the qcow2 write path on the in-memory
 * backend.
 *
 *   crash-sim [options] OUTDIR
 *
 * Creates a small qcow2 image in memory (qcow2_format.create), runs a
 * deterministic sequence of operations (partial and multi-cluster writes,
 * write-zeroes, discards, compressed writes, flushes; enough to allocate L2
 * tables and refcount blocks) and counts the writes W that reach the io.
 * Then for each crash point N in 0..W (all of them up to --dense, then a
 * stride so that at most --max-points are taken) it replays the sequence
 * from scratch with io_mem_set_write_limit (io, N): only the first N writes
 * land. What landed is written to OUTDIR/PREFIX-N.qcow2 (an image equal to
 * the previous point's is not written again) and checked here:
 *   - it opens and its whole guest view reads without error;
 *   - every byte equals the guest view at the last flush that completed
 *     before the crash, or a value some later operation (up to the one in
 *     flight) wrote there (zero/discard: 0);
 *   - when the driver has a check op: no corruption, no check error.
 * A leaking image (and a clean one in ten) is also repaired in-process as
 * `qchain check --repair leaks` does; the result, OUTDIR/PREFIX-N.rep.qcow2,
 * must check clean and read as before.
 * OUTDIR/PREFIX.list gets "N FILE CORRUPTIONS LEAKS CHECK-ERRORS REPAIRED"
 * (the driver's check, "-" without one; the repaired file or "-") for
 * every image written, for the script (qemu-img check, qchain check).
 *
 * --range A:B handles only the sample points with index A..B-1 (the script
 * runs batches so that the files of one batch at a time exist on disk).
 * --backing writes OUTDIR/PREFIX-backing.raw (a raw backing file, shorter
 * than the image) and records it as the image's backing file.
 * --base IMAGE starts every run from a copy of IMAGE (e.g. one with
 * internal snapshots made by qemu-img) instead of a new image; its
 * geometry replaces the creation options.
 *
 * Exit 0 when every check passed, 1 otherwise (details on stderr). */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "format.h"
#include "io.h"
#include "qchain.h"
#include "wtest.h"

enum op_type { OP_WRITE, OP_COMPRESSED, OP_ZERO, OP_DISCARD, OP_FLUSH };
static const char *const op_names[] = {
  "pwrite", "pwrite_compressed", "zero", "discard", "flush",
};

struct op {
  enum op_type type;
  uint64_t off, len;
  unsigned char *data;           /* write ops */
};

static struct {
  struct create_params g;        /* cluster size, refcounts, compat, ... */
  bool compressed, backing;
  uint64_t size, seed, nops;
  uint64_t dense, max_points;
  uint64_t range_a, range_b;
  const char *prefix;
  const char *base;              /* start from this image (no backing) */
  bool reorder;
  bool verbose;
} o = {
  .g = { .cluster_size = 65536, .refcount_bits = 16, .version = 3 },
  .size = 4 << 20, .seed = 1, .nops = 60, .dense = 2000, .max_points = 3000,
  .range_a = 0, .range_b = UINT64_MAX, .prefix = "crash",
};

static const char *outdir;
static struct op *ops;
static uint64_t nops;
static uint32_t sub;
static unsigned char *backing_data;
static uint64_t backing_len;
static char *backing_name;         /* as recorded in the header */
static uint64_t failures;
/* --base: the image the runs start from instead of a new one */
static unsigned char *base_data;
static size_t base_len;
static unsigned char *base_view;

/* The guest view after each flush op (and before op 0): flush_model[k]
 * is the model when op flush_op[k] completed (flush_op[0] = -1). */
static unsigned char **flush_model;
static int64_t *flush_op;
static size_t nflush;

/* Writes counted at the end of each op, in the full run; open_writes
 * after the open, total after the close. */
static uint64_t *w_end;
static uint64_t open_writes, total_writes;

static void
usage (void)
{
  fprintf (stderr,
    "usage: crash-sim [--cluster-size N] [--refcount-bits N] [--compat 0.10|1.1]\n"
    "         [--extended-l2] [--zstd] [--compressed] [--backing] [--size N]\n"
    "         [--ops N] [--seed S] [--dense N] [--max-points N] [--range A:B]\n"
    "         [--prefix NAME] [--base IMAGE] [--reorder] [--verbose] OUTDIR\n");
  exit (2);
}

static void
parse_options (int argc, char **argv)
{
  enum { O_COMP = 256, O_BACK, O_SIZE,
         O_OPS, O_SEED, O_DENSE, O_MAXP, O_RANGE, O_PREFIX, O_VERBOSE,
         O_BASE, O_REORDER };
  static const struct option lo[] = {
    WT_GEOMETRY_OPTIONS,
    { "compressed", no_argument, NULL, O_COMP },
    { "backing", no_argument, NULL, O_BACK },
    { "size", required_argument, NULL, O_SIZE },
    { "ops", required_argument, NULL, O_OPS },
    { "seed", required_argument, NULL, O_SEED },
    { "dense", required_argument, NULL, O_DENSE },
    { "max-points", required_argument, NULL, O_MAXP },
    { "range", required_argument, NULL, O_RANGE },
    { "prefix", required_argument, NULL, O_PREFIX },
    { "verbose", no_argument, NULL, O_VERBOSE },
    { "base", required_argument, NULL, O_BASE },
    { "reorder", no_argument, NULL, O_REORDER },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "", lo, NULL)) != -1) {
    if (wt_geometry_arg (c, optarg, &o.g))
      continue;
    switch (c) {
    case O_COMP: o.compressed = true; break;
    case O_BACK: o.backing = true; break;
    case O_SIZE: o.size = wt_parse_size (optarg); break;
    case O_OPS: o.nops = strtoull (optarg, NULL, 0); break;
    case O_SEED: o.seed = strtoull (optarg, NULL, 0); break;
    case O_DENSE: o.dense = strtoull (optarg, NULL, 0); break;
    case O_MAXP: o.max_points = strtoull (optarg, NULL, 0); break;
    case O_RANGE:
      if (sscanf (optarg, "%" SCNu64 ":%" SCNu64, &o.range_a, &o.range_b) != 2)
        usage ();
      break;
    case O_PREFIX: o.prefix = optarg; break;
    case O_VERBOSE: o.verbose = true; break;
    case O_BASE: o.base = optarg; break;
    case O_REORDER: o.reorder = true; break;
    default: usage ();
    }
  }
  if (optind + 1 != argc)
    usage ();
  outdir = argv[optind];
}

/* ---- the operation sequence ------------------------------------------- */

static void
gen_ops (void)
{
  struct wt_rng r = { .s = o.seed * 0x9e3779b97f4a7c15ULL + 7 };
  uint64_t cs = o.g.cluster_size, nclusters = (o.size + cs - 1) / cs, i;
  uint64_t since_flush = 0;

  nops = o.nops + 1;
  ops = calloc (nops, sizeof *ops);
  if (ops == NULL)
    wt_die ("out of memory");
  for (i = 0; i + 1 < nops; i++) {
    struct op *p = &ops[i];
    unsigned k = (unsigned) wt_below (&r, 100);
    uint64_t c0 = wt_below (&r, nclusters);

    if (since_flush >= 4 && wt_below (&r, 100) < 25) {
      p->type = OP_FLUSH;
      since_flush = 0;
      continue;
    }
    since_flush++;
    if (k < 14) {                          /* zero, often sub-cluster */
      p->type = OP_ZERO;
    }
    else if (k < 26) {
      p->type = OP_DISCARD;
    }
    else if (k < 40 && o.compressed) {
      p->type = OP_COMPRESSED;
      p->off = c0 * cs;
      p->len = cs * (1 + wt_below (&r, 2));
    }
    else if (k < 52) {                     /* big: grows the file */
      p->type = OP_WRITE;
      p->off = c0 * cs + (wt_below (&r, 2) ? 0 : wt_below (&r, cs));
      /* 4 clusters .. 512 KiB, sometimes not cluster-aligned */
      p->len = 4 * cs + wt_below (&r, (512 << 10) > 4 * cs ? (512 << 10) - 4 * cs : 1);
      if (wt_below (&r, 2))
        p->len = p->len / cs * cs;
    }
    else {                                 /* small or partial */
      p->type = OP_WRITE;
      switch (wt_below (&r, 5)) {
      case 0: p->off = c0 * cs + wt_below (&r, cs); p->len = 1 + wt_below (&r, 700); break;
      case 1: p->off = c0 * cs + sub * wt_below (&r, cs / sub); p->len = sub; break;
      case 2: p->off = c0 * cs + cs / 2; p->len = cs; break;
      case 3: p->off = c0 * cs; p->len = cs; break;
      default: p->off = c0 * cs + cs - 100; p->len = 200 + wt_below (&r, 3 * cs); break;
      }
    }
    if (p->type == OP_ZERO || p->type == OP_DISCARD) {
      if (wt_below (&r, 2)) {
        p->off = c0 * cs;
        p->len = cs * (1 + wt_below (&r, 4));
      }
      else {
        p->off = c0 * cs + sub * wt_below (&r, cs / sub);
        p->len = sub * (1 + wt_below (&r, 3)) + (wt_below (&r, 3) ? 0 : 77);
      }
    }
    if (p->off >= o.size)
      p->off = o.size - 1;
    if (p->len > o.size - p->off)
      p->len = o.size - p->off;
    if (p->type == OP_WRITE || p->type == OP_COMPRESSED) {
      enum wt_fill f = (enum wt_fill) wt_below (&r, WT_NFILL);
      if (p->type == OP_COMPRESSED && f == WT_RANDOM && wt_below (&r, 2))
        f = WT_PHRASES;
      p->data = malloc (p->len);
      if (p->data == NULL)
        wt_die ("out of memory");
      wt_fill (&r, p->data, p->len, f);
    }
  }
  ops[nops - 1].type = OP_FLUSH;           /* the final flush */
}

static void
apply_model (unsigned char *m, const struct op *p)
{
  if (p->type == OP_WRITE || p->type == OP_COMPRESSED)
    memcpy (m + p->off, p->data, p->len);
  else if (p->type == OP_ZERO || p->type == OP_DISCARD)
    memset (m + p->off, 0, p->len);
}

static void
build_models (void)
{
  unsigned char *m = calloc (1, o.size);
  uint64_t i;

  if (m == NULL)
    wt_die ("out of memory");
  if (backing_data)
    memcpy (m, backing_data, backing_len < o.size ? backing_len : o.size);
  if (base_view)
    memcpy (m, base_view, o.size);
  flush_model = calloc (nops + 1, sizeof *flush_model);
  flush_op = calloc (nops + 1, sizeof *flush_op);
  if (!flush_model || !flush_op)
    wt_die ("out of memory");
  flush_model[0] = malloc (o.size);
  memcpy (flush_model[0], m, o.size);
  flush_op[0] = -1;
  nflush = 1;
  for (i = 0; i < nops; i++) {
    apply_model (m, &ops[i]);
    if (ops[i].type == OP_FLUSH) {
      flush_model[nflush] = malloc (o.size);
      if (flush_model[nflush] == NULL)
        wt_die ("out of memory");
      memcpy (flush_model[nflush], m, o.size);
      flush_op[nflush++] = (int64_t) i;
    }
  }
  free (m);
}

/* ---- the backing file ------------------------------------------------- */

static void
make_backing (void)
{
  struct wt_rng r = { .s = o.seed + 99 };
  char *path;
  uint64_t off;
  int e;

  backing_len = o.size * 3 / 4 / 512 * 512 + 512;    /* short backing */
  backing_data = calloc (1, backing_len);
  if (backing_data == NULL)
    wt_die ("out of memory");
  for (off = 0; off < backing_len; off += 4096) {
    uint64_t n = backing_len - off < 4096 ? backing_len - off : 4096;
    if (wt_below (&r, 4) != 0)
      wt_fill (&r, backing_data + off, n, (enum wt_fill) wt_below (&r, WT_NFILL));
  }
  if (asprintf (&backing_name, "%s-backing.raw", o.prefix) < 0
      || asprintf (&path, "%s/%s", outdir, backing_name) < 0)
    wt_die ("out of memory");
  e = wt_write_file (path, backing_data, backing_len);
  if (e < 0)
    wt_die ("%s: %s", path, strerror (-e));
  free (path);
}

static int
backing_read (void *opaque, void *buf, size_t n, uint64_t off)
{
  size_t take = 0;

  (void) opaque;
  if (off < backing_len)
    take = backing_len - off < n ? (size_t) (backing_len - off) : n;
  if (take)
    memcpy (buf, backing_data + off, take);
  memset ((char *) buf + take, 0, n - take);
  return 0;
}

/* --base: load the image, take its geometry and guest view. */
static void
load_base (void)
{
  struct chain_policy pol = { .format = "qcow2", .no_backing = true };
  struct chain *c;
  struct layer *l;
  FILE *f = fopen (o.base, "rb");
  long n;

  if (f == NULL || fseek (f, 0, SEEK_END) < 0 || (n = ftell (f)) < 0)
    wt_die ("%s: %m", o.base);
  rewind (f);
  base_len = (size_t) n;
  base_data = malloc (base_len ? base_len : 1);
  if (base_data == NULL || fread (base_data, 1, base_len, f) != base_len)
    wt_die ("%s: read failed", o.base);
  fclose (f);
  WT_CALL ("chain_open (--base)", chain_open (o.base, &pol, &c));
  l = &c->layers[0];
  if (l->info.backing_filename)
    wt_die ("%s: --base images must not have a backing file", o.base);
  o.size = l->info.virtual_size;
  o.g.cluster_size = l->info.cluster_size;
  o.g.refcount_bits = l->info.refcount_bits;
  o.g.version = l->info.qcow2_version;
  o.g.extended_l2 = !!(l->info.flags & QC_INFO_EXTENDED_L2);
  o.g.zstd = l->info.compression_type
           && strcmp (l->info.compression_type, "zstd") == 0;
  base_view = malloc (o.size);
  if (base_view == NULL)
    wt_die ("out of memory");
  WT_CALL ("chain_read (--base)", chain_read (c, 0, base_view, o.size, 0));
  chain_close (c);
}

/* ---- the journal: every write of the full run, with its flush epoch --- */

enum jtype { J_WRITE, J_ZERO, J_TRUNCATE };
struct jentry {
  enum jtype type;
  uint64_t off, len;
  unsigned char *data;
  uint64_t epoch;                /* io flushes issued before it */
};
static struct jentry *journal;
static uint64_t njournal, jcap, nflushes;
static unsigned char *init_data;   /* the image when the run starts */
static size_t init_len;
static uint64_t *fc_end;           /* io flushes issued at the end of op i */
static uint64_t crash_epoch = UINT64_MAX;  /* reordering crash: its epoch */
static const char *cur_tag = "";   /* "-newest", "-random": which reordering */

struct jio {
  struct io io;
  struct io *inner;
};

static struct jentry *
jadd (enum jtype t, uint64_t off, uint64_t len)
{
  struct jentry *e;

  if (njournal == jcap) {
    jcap = jcap ? 2 * jcap : 256;
    journal = realloc (journal, jcap * sizeof *journal);
    if (journal == NULL)
      wt_die ("out of memory");
  }
  e = &journal[njournal++];
  memset (e, 0, sizeof *e);
  e->type = t;
  e->off = off;
  e->len = len;
  e->epoch = nflushes;
  return e;
}

static int
j_pread (struct io *io, void *buf, size_t n, uint64_t off)
{
  struct io *in = ((struct jio *) io)->inner;
  return in->ops->pread (in, buf, n, off);
}

static int
j_pwrite (struct io *io, const void *buf, size_t n, uint64_t off)
{
  struct io *in = ((struct jio *) io)->inner;
  struct jentry *e = jadd (J_WRITE, off, n);

  e->data = malloc (n ? n : 1);
  if (e->data == NULL)
    wt_die ("out of memory");
  memcpy (e->data, buf, n);
  return in->ops->pwrite (in, buf, n, off);
}

static int
j_flush (struct io *io)
{
  struct io *in = ((struct jio *) io)->inner;
  nflushes++;
  return in->ops->flush (in);
}

static int
j_get_size (struct io *io, uint64_t *size)
{
  struct io *in = ((struct jio *) io)->inner;
  return in->ops->get_size (in, size);
}

static int
j_truncate (struct io *io, uint64_t size)
{
  struct io *in = ((struct jio *) io)->inner;
  jadd (J_TRUNCATE, size, 0);
  return in->ops->truncate (in, size);
}

static int
j_zero (struct io *io, uint64_t off, uint64_t len)
{
  struct io *in = ((struct jio *) io)->inner;
  jadd (J_ZERO, off, len);
  return in->ops->zero (in, off, len);
}

static int
j_extent (struct io *io, uint64_t off, uint64_t len, bool *is_data,
          uint64_t *run)
{
  struct io *in = ((struct jio *) io)->inner;
  return in->ops->extent (in, off, len, is_data, run);
}

static int
j_allocated (struct io *io, uint64_t *bytes)
{
  struct io *in = ((struct jio *) io)->inner;
  return in->ops->allocated (in, bytes);
}

static void
j_close (struct io *io)
{
  (void) io;                     /* the inner io is closed by its owner */
}

static const struct io_ops jio_ops = {
  .kind = "journal",
  .pread = j_pread, .pwrite = j_pwrite, .flush = j_flush,
  .get_size = j_get_size, .truncate = j_truncate, .zero = j_zero,
  .extent = j_extent, .allocated = j_allocated, .close = j_close,
};

/* The image when the first n writes were issued: every write of an epoch
 * before the crash's (flushed) lands; of the writes in the crash's epoch,
 * those keep() accepts. */
static unsigned char *
build_image (uint64_t n, bool (*keep) (uint64_t idx, uint64_t n, void *),
             void *opaque, size_t *lenp)
{
  uint64_t e = n < njournal ? journal[n].epoch : nflushes, i;
  size_t len = init_len, cap = init_len + (1 << 20);
  unsigned char *d = calloc (1, cap);

  if (d == NULL)
    wt_die ("out of memory");
  memcpy (d, init_data, init_len);
  for (i = 0; i < n && i < njournal; i++) {
    const struct jentry *j = &journal[i];
    uint64_t end = j->off + j->len;

    if (j->epoch == e && !keep (i, n, opaque))
      continue;
    if (j->type == J_TRUNCATE)
      end = j->off;
    if ((j->type == J_WRITE || j->type == J_TRUNCATE) && end > cap) {
      size_t ncap = cap;
      while (ncap < end)
        ncap *= 2;
      d = realloc (d, ncap);
      if (d == NULL)
        wt_die ("out of memory");
      memset (d + cap, 0, ncap - cap);
      cap = ncap;
    }
    switch (j->type) {
    case J_WRITE:
      memcpy (d + j->off, j->data, j->len);
      if (end > len)
        len = end;
      break;
    case J_ZERO:
      if (j->off < len)
        memset (d + j->off, 0, (end < len ? end : len) - j->off);
      break;
    default:
      if (end < len)
        memset (d + end, 0, len - end);
      len = end;
      break;
    }
  }
  *lenp = len;
  return d;
}

/* The io flushes issued before the crash at n (crash just before write n). */
static uint64_t
epoch_at (uint64_t n)
{
  return n < njournal ? journal[n].epoch : nflushes;
}

/* ---- replaying -------------------------------------------------------- */

/* Run the sequence with only the first `limit` writes landing; in the
 * full run (record) note the writes at each op's end. Stops at the first
 * op that starts when the limit is already reached. The io holds what
 * landed. */
static struct io *
replay (uint64_t limit, bool record)
{
  struct create_params p = o.g;
  struct backing_reader br = { .read = backing_read, .size = backing_len };
  static struct jio jw;
  struct io *io;
  void *st;
  uint64_t i;
  int r;

  p.size = o.size;
  p.backing = backing_name;
  p.backing_format = backing_name ? "raw" : NULL;
  if (o.base)
    WT_CALL ("io_open_mem", io_open_mem ("crash.qcow2", base_data, base_len,
                                         &io));
  else {
    WT_CALL ("io_open_mem", io_open_mem ("crash.qcow2", NULL, 0, &io));
    WT_CALL ("qcow2_format.create", qcow2_format.create (io, &p));
  }
  io_mem_set_write_limit (io, limit);
  if (record) {
    /* the journal sees every write and flush of the full run */
    size_t l;
    const unsigned char *d0 = io_mem_data (io, &l);
    init_data = malloc (l ? l : 1);
    if (init_data == NULL)
      wt_die ("out of memory");
    memcpy (init_data, d0, l);
    init_len = l;
    jw.io.ops = &jio_ops;
    jw.io.name = io->name;
    jw.io.writable = true;
    jw.io.fd = -1;
    jw.io.dfd = -1;
    jw.inner = io;
  }
  r = qcow2_format.open (record ? &jw.io : io, FMT_OPEN_WRITE, &st);
  if (r < 0) {
    if (io_mem_writes (io) < limit)
      wt_die ("open for writing (limit %" PRIu64 "): %s", limit, wt_err ());
    return io;
  }
  if (backing_name)
    qcow2_format.set_backing_reader (st, &br);
  if (record)
    open_writes = io_mem_writes (io);
  for (i = 0; i < nops && io_mem_writes (io) < limit; i++) {
    const struct op *q = &ops[i];

    switch (q->type) {
    case OP_WRITE:
      r = qcow2_format.pwrite (st, q->data, q->len, q->off);
      break;
    case OP_COMPRESSED:
      r = qcow2_format.pwrite_compressed (st, q->data, q->len, q->off);
      break;
    case OP_ZERO:
      r = qcow2_format.zero (st, q->off, q->len);
      break;
    case OP_DISCARD:
      r = qcow2_format.discard (st, q->off, q->len);
      break;
    default:
      r = qcow2_format.flush (st);
      break;
    }
    if (r < 0 && io_mem_writes (io) < limit)
      wt_die ("op %" PRIu64 " (%s %" PRIu64 "+%" PRIu64 ") failed before the "
              "crash point %" PRIu64 ": %s", i, op_names[q->type], q->off,
              q->len, limit, wt_err ());
    if (r < 0)
      break;                /* after the crash: what it did no longer matters */
    if (record) {
      w_end[i] = io_mem_writes (io);
      fc_end[i] = nflushes;
    }
  }
  qcow2_format.close (st);
  if (record)
    total_writes = io_mem_writes (io);
  return io;
}

/* ---- checking one crash point ---------------------------------------- */

/* Report a failure at crash point n. */
static void
point_fail (uint64_t n, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
point_fail (uint64_t n, const char *fmt, ...)
{
  va_list ap;

  failures++;
  if (failures > 40)
    return;
  fprintf (stderr, "crash-sim: FAIL: crash after write %" PRIu64 " of %"
           PRIu64 "%s%s: ", n, total_writes, cur_tag[0] ? " reordered " : "",
           cur_tag[0] ? cur_tag + 1 : "");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

/* The op in flight at crash point n (nops if none: after the close). */
static uint64_t
op_at (uint64_t n)
{
  uint64_t i;

  for (i = 0; i < nops; i++)
    if (w_end[i] > n)
      return i;
  return nops;
}

static void
check_view (uint64_t n, const unsigned char *view)
{
  size_t f = 0, k;
  uint64_t i, b, bad = 0, inflight = op_at (n);
  const unsigned char *base;
  int64_t first_cand = 0, last_cand = -1;

  /* the last flush completed: all its writes landed (in-order crashes),
   * its io flushes were all issued (reordering crashes) */
  for (k = 1; k < nflush; k++)
    if (crash_epoch == UINT64_MAX ? w_end[flush_op[k]] <= n
                                  : fc_end[flush_op[k]] <= crash_epoch)
      f = k;
  base = flush_model[f];
  /* ops that may have put bytes on disk: after that flush, started before
   * the crash (some write at or after their start landed) */
  first_cand = flush_op[f] + 1;
  for (i = (uint64_t) first_cand; i < nops; i++) {
    uint64_t start = i == 0 ? open_writes : w_end[i - 1];
    if (start < n)
      last_cand = (int64_t) i;
  }
  for (b = 0; b < o.size; b++) {
    int64_t j;
    bool ok = false;

    /* fast path: whole 4 KiB blocks equal to the flushed view */
    if ((b & 4095) == 0 && o.size - b >= 4096
        && memcmp (view + b, base + b, 4096) == 0) {
      b += 4095;
      continue;
    }
    if (view[b] == base[b])
      continue;
    for (j = last_cand; j >= first_cand && !ok; j--) {
      const struct op *q = &ops[j];
      if (b < q->off || b >= q->off + q->len)
        continue;
      if (q->type == OP_WRITE || q->type == OP_COMPRESSED)
        ok = q->data[b - q->off] == view[b];
      else if (q->type == OP_ZERO || q->type == OP_DISCARD)
        ok = view[b] == 0;
    }
    if (!ok) {
      if (bad++ == 0) {
        char cands[512] = "";
        size_t used = 0;
        for (j = first_cand; j <= last_cand && used < sizeof cands - 64; j++)
          if (b >= ops[j].off && b < ops[j].off + ops[j].len)
            used += (size_t) snprintf (cands + used, sizeof cands - used,
                                       " #%" PRId64 " %s %" PRIu64 "+%" PRIu64,
                                       j, op_names[ops[j].type], ops[j].off,
                                       ops[j].len);
        point_fail (n, "guest byte %" PRIu64 " reads 0x%02x: not the value "
                    "at the last completed flush (op #%" PRId64 ": 0x%02x) "
                    "nor one written since (op in flight #%" PRIu64
                    "; ops since the flush covering it:%s)", b, view[b],
                    flush_op[f], base[b], inflight,
                    cands[0] ? cands : " none");
      }
    }
  }
  if (bad > 1)
    fprintf (stderr, "crash-sim:   (%" PRIu64 " such bytes at this point)\n",
             bad);
}

/* Read the whole guest view of path; NULL (having reported) if it fails. */
static unsigned char *
read_view (uint64_t n, const char *path, struct chain **cp)
{
  struct chain_policy pol = { .format = "qcow2" };
  struct chain *c;
  unsigned char *view;
  int r;

  *cp = NULL;
  r = chain_open (path, &pol, &c);
  if (r < 0) {
    point_fail (n, "%s does not open: %s", path, wt_err ());
    return NULL;
  }
  *cp = c;
  if (c->layers[0].info.virtual_size != o.size)
    point_fail (n, "%s: virtual size %" PRIu64 ", expected %" PRIu64, path,
                c->layers[0].info.virtual_size, o.size);
  view = malloc (o.size);
  if (view == NULL)
    wt_die ("out of memory");
  r = chain_read (c, 0, view, o.size, 0);
  if (r < 0) {
    point_fail (n, "%s: reading the guest view failed: %s", path, wt_err ());
    free (view);
    return NULL;
  }
  return view;
}

/* The driver's check of an opened chain's top; false if it has none. */
static bool
driver_check (uint64_t n, const char *path, struct chain *c,
              struct qc_check_result *out)
{
  struct qc_check_result res = { .struct_size = sizeof res };
  int r;

  if (c->layers[0].ops->check == NULL)
    return false;
  r = c->layers[0].ops->check (c->layers[0].st, 0, &res, NULL, NULL);
  if (r < 0) {
    point_fail (n, "%s: the driver's check could not finish: %s", path,
                wt_err ());
    return false;
  }
  *out = res;
  return true;
}

/* Open what landed at point n (written to path) and check it: *out gets
 * the driver's check result (check_errors = UINT64_MAX: none ran);
 * returns the guest view (NULL if it could not be read). */
static unsigned char *
check_image (uint64_t n, const char *path, struct qc_check_result *out)
{
  struct chain *c;
  unsigned char *view;

  memset (out, 0, sizeof *out);
  out->check_errors = UINT64_MAX;
  view = read_view (n, path, &c);
  if (view)
    check_view (n, view);
  if (c && driver_check (n, path, c, out)
      && (out->corruptions || out->check_errors))
    point_fail (n, "%s: the driver's check finds %" PRIu64 " corruptions, %"
                PRIu64 " check errors (%" PRIu64 " leaks)", path,
                out->corruptions, out->check_errors, out->leaks);
  chain_close (c);
  return view;
}

/* Repair leaks in-process (as qchain check --repair leaks does: open for
 * repair, check with QC_CHECK_REPAIR_LEAKS, flush), write the result to
 * rpath; then it must check clean and read as view. */
static void
repair_image (uint64_t n, const unsigned char *d, size_t len,
              const unsigned char *view, const char *rpath, uint64_t leaks)
{
  struct qc_check_result res = { .struct_size = sizeof res };
  struct io *io;
  struct chain *c;
  unsigned char *v2;
  void *st;
  size_t rlen;
  const unsigned char *rd;
  int r, e;

  WT_CALL ("io_open_mem", io_open_mem (rpath, d, len, &io));
  r = qcow2_format.open (io, FMT_OPEN_WRITE | FMT_OPEN_REPAIR, &st);
  if (r < 0) {
    point_fail (n, "repair: open for repair fails: %s", wt_err ());
    io_close (io);
    return;
  }
  r = qcow2_format.check (st, QC_CHECK_REPAIR_LEAKS, &res, NULL, NULL);
  if (r == 0)
    r = qcow2_format.flush (st);
  if (r < 0)
    point_fail (n, "repair: check --repair leaks fails: %s", wt_err ());
  else if (res.leaks_fixed != leaks || res.leaks || res.corruptions)
    point_fail (n, "repair: %" PRIu64 " leaks found before, %" PRIu64
                " fixed; left: %" PRIu64 " leaks, %" PRIu64 " corruptions",
                leaks, res.leaks_fixed, res.leaks, res.corruptions);
  qcow2_format.close (st);
  rd = io_mem_data (io, &rlen);
  e = wt_write_file (rpath, rd, rlen);
  if (e < 0)
    wt_die ("%s: %s", rpath, strerror (-e));
  io_close (io);
  v2 = read_view (n, rpath, &c);
  if (v2 && view) {
    int64_t x = wt_first_diff (view, v2, o.size);
    if (x >= 0)
      point_fail (n, "repair changed the guest view at offset %" PRId64, x);
  }
  memset (&res, 0, sizeof res);
  if (c && driver_check (n, rpath, c, &res)
      && (res.leaks || res.corruptions || res.check_errors))
    point_fail (n, "%s: after the repair the driver's check still finds %"
                PRIu64 " leaks, %" PRIu64 " corruptions", rpath, res.leaks,
                res.corruptions);
  chain_close (c);
  free (v2);
}

static bool
keep_newest (uint64_t idx, uint64_t n, void *opaque)
{
  (void) opaque;
  return idx + 1 == n;
}

static bool
keep_random (uint64_t idx, uint64_t n, void *opaque)
{
  struct wt_rng r = { .s = *(uint64_t *) opaque + idx * 7919 };

  (void) n;
  return wt_next (&r) & 1;
}

/* Write the image d of crash point n to a file, check it (and repair it)
 * in-process, list it for the script. Returns 1. */
static uint64_t
do_point (FILE *list, uint64_t n, const char *tag, const unsigned char *d,
          size_t len)
{
  struct qc_check_result res;
  unsigned char *view;
  char *path, *rpath = NULL;
  int e;

  if (asprintf (&path, "%s/%s-%06" PRIu64 "%s.qcow2", outdir, o.prefix, n,
                tag) < 0)
    wt_die ("out of memory");
  e = wt_write_file (path, d, len);
  if (e < 0)
    wt_die ("%s: %s", path, strerror (-e));
  cur_tag = tag;
  view = check_image (n, path, &res);
  /* leaking images (and one clean image in ten) get repaired */
  if (res.check_errors != UINT64_MAX && res.corruptions == 0
      && (res.leaks || n % 10 == 0)) {
    if (asprintf (&rpath, "%s/%s-%06" PRIu64 "%s.rep.qcow2", outdir,
                  o.prefix, n, tag) < 0)
      wt_die ("out of memory");
    repair_image (n, d, len, view, rpath, res.leaks);
  }
  if (res.check_errors == UINT64_MAX)
    fprintf (list, "%" PRIu64 " %s - - - -\n", n, path);
  else
    fprintf (list, "%" PRIu64 " %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n",
             n, path, res.corruptions, res.leaks, res.check_errors,
             rpath ? rpath : "-");
  if (o.verbose)
    fprintf (stderr, "point %" PRIu64 "%s: %zu bytes\n", n, tag, len);
  cur_tag = "";
  free (rpath);
  free (view);
  free (path);
  return 1;
}

int
main (int argc, char **argv)
{
  uint64_t *points, npoints = 0, i, stride, written = 0, checked = 0;
  unsigned char *prev = NULL;          /* the previous point's image */
  size_t prev_len = 0;
  char *listpath;
  FILE *list;

  wt_prog = "crash-sim";
  parse_options (argc, argv);
  if (qcow2_format.create == NULL || qcow2_format.pwrite == NULL
      || qcow2_format.zero == NULL || qcow2_format.discard == NULL
      || qcow2_format.flush == NULL || qcow2_format.set_backing_reader == NULL
      || (o.compressed && qcow2_format.pwrite_compressed == NULL))
    wt_die ("the qcow2 driver lacks a write op this test needs (NULL)");
  if (o.base) {
    if (o.backing)
      wt_die ("--base and --backing do not go together");
    load_base ();
  }
  sub = o.g.extended_l2 ? o.g.cluster_size / 32 : o.g.cluster_size;
  if (o.backing)
    make_backing ();
  gen_ops ();
  build_models ();

  /* The full run: how many writes, and where each op ends. */
  w_end = calloc (nops, sizeof *w_end);
  fc_end = calloc (nops, sizeof *fc_end);
  if (w_end == NULL || fc_end == NULL)
    wt_die ("out of memory");
  {
    struct io *io = replay (UINT64_MAX, true);
    char *path;
    if (asprintf (&path, "%s/%s-full.qcow2", outdir, o.prefix) < 0)
      wt_die ("out of memory");
    {
      size_t len;
      const unsigned char *d = io_mem_data (io, &len);
      int e = wt_write_file (path, d, len);
      if (e < 0)
        wt_die ("%s: %s", path, strerror (-e));
    }
    /* The replays assume the library does the same writes each time. */
    {
      struct io *again = replay (total_writes, false);
      size_t l1, l2;
      const unsigned char *d1 = io_mem_data (io, &l1);
      const unsigned char *d2 = io_mem_data (again, &l2);
      if (l1 != l2 || memcmp (d1, d2, l1) != 0)
        wt_die ("the library is not deterministic: a replay of the same "
                "operations persists other bytes (%zu vs %zu bytes)", l1, l2);
      io_close (again);
    }
    io_close (io);
    /* The complete run must read as the final model. */
    {
      struct qc_check_result res;
      free (check_image (total_writes, path, &res));
    }
    free (path);
  }

  /* The sample: every point up to dense, then a stride. */
  points = malloc ((total_writes + 1) * sizeof *points);
  if (points == NULL)
    wt_die ("out of memory");
  stride = 1;
  if (total_writes + 1 > o.max_points && o.max_points > o.dense)
    stride = (total_writes + 1 - o.dense) / (o.max_points - o.dense) + 1;
  for (i = 0; i <= total_writes; i += i < o.dense ? 1 : stride)
    points[npoints++] = i;
  if (points[npoints - 1] != total_writes)
    points[npoints++] = total_writes;

  if (asprintf (&listpath, "%s/%s.list", outdir, o.prefix) < 0)
    wt_die ("out of memory");
  list = fopen (listpath, "w");
  if (list == NULL)
    wt_die ("%s: %m", listpath);
  for (i = o.range_a; i < npoints && i < o.range_b; i++) {
    uint64_t n = points[i];
    struct io *io = NULL;
    size_t len;
    const unsigned char *d;

    checked++;
    if (!o.reorder) {
      io = replay (n, false);
      d = io_mem_data (io, &len);
      if (prev && len == prev_len && memcmp (d, prev, len) == 0) {
        io_close (io);
        continue;                /* the same image as the previous point */
      }
      free (prev);
      prev = malloc (len ? len : 1);
      if (prev == NULL)
        wt_die ("out of memory");
      memcpy (prev, d, len);
      prev_len = len;
      written += do_point (list, n, "", d, len);
      io_close (io);
    }
    else {
      /* writes since the last io flush land in any order: of the writes
       * of the crash's epoch, only the newest one; a random subset */
      uint64_t e = epoch_at (n), first = n, k;
      unsigned char *img;

      while (first > 0 && journal[first - 1].epoch == e)
        first--;
      if (n - first < 2)
        continue;                /* nothing to reorder: as in order */
      crash_epoch = e;
      img = build_image (n, keep_newest, NULL, &len);
      written += do_point (list, n, "-newest", img, len);
      free (img);
      k = n * 0x9e3779b97f4a7c15ULL + o.seed;
      img = build_image (n, keep_random, &k, &len);
      written += do_point (list, n, "-random", img, len);
      free (img);
      crash_epoch = UINT64_MAX;
    }
  }
  fclose (list);
  printf ("crash-sim %s: cluster %" PRIu32 " refcount_bits %" PRIu32
          " v%" PRIu32 "%s%s%s: %" PRIu64 " ops, %" PRIu64 " writes, %"
          PRIu64 " sample points (stride %" PRIu64 "), checked %" PRIu64
          " (%" PRIu64 " distinct images%s), %" PRIu64 " failures\n",
          o.prefix, o.g.cluster_size, o.g.refcount_bits, o.g.version,
          o.g.extended_l2 ? " extended_l2" : "",
          o.compressed ? (o.g.zstd ? " compressed(zstd)" : " compressed") : "",
          o.backing ? " backing" : "", nops, total_writes, npoints, stride,
          checked, written, o.reorder ? ", reordered" : "", failures);
  free (prev);
  free (listpath);
  free (points);
  return failures ? 1 : 0;
}
