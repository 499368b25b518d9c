/* random-write: drive random guest writes, write-zeroes, discards,
 * compressed writes, flushes and resizes through the qcow2 write path of
 * the library, against an in-memory model of the guest view.
 *
 *   random-write [options] IMAGE
 *
 * Creates IMAGE (qcow2_format.create; or with --existing writes into an
 * image that exists), opens it writable with its backing chain (chain_open),
 * so that copy-on-write reads the backing view, runs the operations, reads
 * back ranges through chain_read after some of them and compares with the
 * model (failing at the first difference, with its offset), flushes,
 * closes, reopens read-only and compares the whole guest view, and writes
 * the model to IMAGE.model.raw for `qemu-img compare`.
 *
 * Exit 0 on success, 1 on any failure (message on stderr). */
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

struct options {
  struct create_params g;        /* cluster size, refcounts, compat, ... */
  bool lazy_refcounts;
  unsigned compress_pct;
  const char *backing;
  const char *backing_format;
  uint64_t ops;
  uint64_t seed;
  uint64_t size;
  bool existing;
  bool log;
  bool resize;
  unsigned verify_pct;
  const char *expect_initial;
  const char *model_path;
  uint64_t max_len;
};

static struct options o = {
  .compress_pct = 0, .ops = 1000, .seed = 1, .verify_pct = 20,
  .backing_format = "qcow2",
};

/* The image under test. */
static const char *image;
static struct chain *ch;
static const struct format_ops *fops;
static void *st;
static uint32_t cluster, sub;
static uint64_t vsize;
static unsigned char *model;
static unsigned char *rbuf;          /* read-back buffer */
static size_t rbuf_len;
static uint64_t op_no;
static char op_desc[160];

static struct {
  uint64_t write, zero, discard, compressed, flush, resize, verify,
    verified_bytes, full;
} cnt;

static void
usage (void)
{
  fprintf (stderr,
    "usage: random-write [--cluster-size N] [--refcount-bits N] [--compat 0.10|1.1]\n"
    "         [--extended-l2] [--zstd] [--lazy-refcounts] [--compress-ratio P]\n"
    "         [--backing FILE [--backing-format FMT]] [--ops N] [--seed S]\n"
    "         [--size N] [--existing] [--resize] [--verify-ratio P]\n"
    "         [--max-len N] [--expect-initial RAW] [--model PATH] [--log] IMAGE\n");
  exit (2);
}

static void
parse_options (int argc, char **argv)
{
  enum { O_LAZY = 256, O_CR, O_BACK,
         O_BFMT, O_OPS, O_SEED, O_SIZE, O_EXIST, O_RESIZE, O_VR, O_MAXLEN,
         O_EXPECT, O_MODEL, O_LOG };
  static const struct option lo[] = {
    WT_GEOMETRY_OPTIONS,
    { "lazy-refcounts", no_argument, NULL, O_LAZY },
    { "compress-ratio", required_argument, NULL, O_CR },
    { "backing", required_argument, NULL, O_BACK },
    { "backing-format", required_argument, NULL, O_BFMT },
    { "ops", required_argument, NULL, O_OPS },
    { "seed", required_argument, NULL, O_SEED },
    { "size", required_argument, NULL, O_SIZE },
    { "existing", no_argument, NULL, O_EXIST },
    { "resize", no_argument, NULL, O_RESIZE },
    { "verify-ratio", required_argument, NULL, O_VR },
    { "max-len", required_argument, NULL, O_MAXLEN },
    { "expect-initial", required_argument, NULL, O_EXPECT },
    { "model", required_argument, NULL, O_MODEL },
    { "log", no_argument, NULL, O_LOG },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "", lo, NULL)) != -1) {
    if (wt_geometry_arg (c, optarg, &o.g))
      continue;
    switch (c) {
    case O_LAZY: o.lazy_refcounts = true; break;
    case O_CR: o.compress_pct = (unsigned) strtoul (optarg, NULL, 10); break;
    case O_BACK: o.backing = optarg; break;
    case O_BFMT: o.backing_format = optarg; break;
    case O_OPS: o.ops = strtoull (optarg, NULL, 0); break;
    case O_SEED: o.seed = strtoull (optarg, NULL, 0); break;
    case O_SIZE: o.size = wt_parse_size (optarg); break;
    case O_EXIST: o.existing = true; break;
    case O_RESIZE: o.resize = true; break;
    case O_VR: o.verify_pct = (unsigned) strtoul (optarg, NULL, 10); break;
    case O_MAXLEN: o.max_len = wt_parse_size (optarg); break;
    case O_EXPECT: o.expect_initial = optarg; break;
    case O_MODEL: o.model_path = optarg; break;
    case O_LOG: o.log = true; break;
    default: usage ();
    }
  }
  if (optind + 1 != argc)
    usage ();
  image = argv[optind];
}

/* ---- setting up ------------------------------------------------------- */

/* The virtual size of the backing file (for a default size). */
static uint64_t
backing_size (void)
{
  struct chain_policy pol = { .format = o.backing_format };
  struct chain *b;
  uint64_t size;

  WT_CALL ("chain_open (backing)", chain_open (o.backing, &pol, &b));
  size = b->layers[0].info.virtual_size;
  chain_close (b);
  return size;
}

static void
create_image (void)
{
  struct create_params p = o.g;
  struct io *io;

  p.size = o.size;
  p.backing = o.backing;
  p.backing_format = o.backing ? o.backing_format : NULL;
  p.lazy_refcounts = o.lazy_refcounts;
  if (p.size == 0 && o.backing)
    p.size = backing_size ();
  if (p.size == 0)
    p.size = 16 << 20;
  if (qcow2_format.create == NULL)
    wt_die ("qcow2_format.create is not implemented (NULL)");
  WT_CALL ("io_open_file (create)",
           io_open_file (image, IO_CREATE | IO_WRITE, &io));
  WT_CALL ("qcow2_format.create", qcow2_format.create (io, &p));
  io_close (io);
}

static struct chain_below below;
static struct backing_reader br;

static void
open_image (void)
{
  struct chain_policy pol = { .format = "qcow2", .writable = true };
  struct layer *l;

  WT_CALL ("chain_open (writable)", chain_open (image, &pol, &ch));
  l = &ch->layers[0];
  fops = l->ops;
  st = l->st;
  if (!fops->set_backing_reader || !fops->pwrite || !fops->zero
      || !fops->discard || !fops->flush
      || (o.compress_pct && !fops->pwrite_compressed)
      || (o.resize && !fops->resize))
    wt_die ("%s: the %s driver lacks a write op this test needs (NULL)",
            image, fops->name);
  if (ch->n > 1) {
    chain_backing_reader (ch, 0, &below, &br);
    fops->set_backing_reader (st, &br);
  }
  cluster = l->info.cluster_size;
  sub = (l->info.flags & QC_INFO_EXTENDED_L2) ? cluster / 32 : cluster;
  vsize = l->info.virtual_size;
  if (cluster < 512 || (cluster & (cluster - 1)))
    wt_die ("%s: cluster size %" PRIu32 " after open", image, cluster);
  if (!o.existing) {
    if (o.g.cluster_size && cluster != o.g.cluster_size)
      wt_die ("%s: created with cluster_size %" PRIu32 ", opens with %" PRIu32,
              image, o.g.cluster_size, cluster);
    if (o.g.version && l->info.qcow2_version != o.g.version)
      wt_die ("%s: created as v%" PRIu32 ", opens as v%" PRIu32,
              image, o.g.version, l->info.qcow2_version);
    if (o.g.refcount_bits && l->info.refcount_bits != o.g.refcount_bits)
      wt_die ("%s: created with refcount_bits %" PRIu32 ", opens with %" PRIu32,
              image, o.g.refcount_bits, l->info.refcount_bits);
    if (o.g.extended_l2 != !!(l->info.flags & QC_INFO_EXTENDED_L2))
      wt_die ("%s: extended_l2 %d requested, image has %d", image,
              o.g.extended_l2, !!(l->info.flags & QC_INFO_EXTENDED_L2));
    if (o.g.zstd && (l->info.compression_type == NULL
                   || strcmp (l->info.compression_type, "zstd") != 0))
      wt_die ("%s: created with zstd, compression type is %s", image,
              l->info.compression_type ? l->info.compression_type : "(null)");
    if (o.size && vsize != o.size)
      wt_die ("%s: created with size %" PRIu64 ", virtual size %" PRIu64,
              image, o.size, vsize);
  }
}

/* ---- checking --------------------------------------------------------- */

static void
ensure_rbuf (size_t n)
{
  if (n > rbuf_len) {
    free (rbuf);
    rbuf = malloc (n);
    if (rbuf == NULL)
      wt_die ("out of memory");
    rbuf_len = n;
  }
}

/* Read [off, off+n) of the guest view and compare with the model. */
static void
verify_range (struct chain *c, uint64_t off, uint64_t n, const char *when)
{
  const uint64_t step = 4 << 20;

  while (n > 0) {
    size_t k = (size_t) (n < step ? n : step);
    int64_t d;
    int r;

    ensure_rbuf (k);
    r = chain_read (c, 0, rbuf, k, off);
    if (r < 0)
      wt_die ("%s: op %" PRIu64 " (%s): %s: chain_read %" PRIu64 "+%zu: %s",
              image, op_no, op_desc, when, off, k, wt_err ());
    d = wt_first_diff (rbuf, model + off, k);
    if (d >= 0)
      wt_die ("%s: op %" PRIu64 " (%s): %s: guest view differs from the "
              "model at offset %" PRIu64 " (0x%" PRIx64 "): read 0x%02x, "
              "expected 0x%02x (seed %" PRIu64 ")",
              image, op_no, op_desc, when, off + (uint64_t) d,
              off + (uint64_t) d, rbuf[d], model[off + (uint64_t) d], o.seed);
    cnt.verified_bytes += k;
    off += k;
    n -= k;
  }
  cnt.verify++;
}

/* ---- choosing offsets and lengths ------------------------------------ */

static struct wt_rng rng;

/* An offset biased to (sub)cluster boundaries and their neighbours. */
static uint64_t
pick_off (void)
{
  uint64_t unit = wt_chance (&rng, 50) ? sub : cluster;
  uint64_t base = wt_below (&rng, vsize / unit + 1) * unit, off;

  switch (wt_below (&rng, 9)) {
  case 0: case 1: case 2: off = base; break;
  case 3: off = base >= 16 ? base - 1 - wt_below (&rng, 16) : 0; break;
  case 4: off = base + 1 + wt_below (&rng, 16); break;
  case 5: off = base + wt_below (&rng, unit); break;
  case 6: off = base + 512 * wt_below (&rng, unit / 512 + 1); break;
  case 7: off = base >= 512 ? base - 512 : base; break;
  default: off = wt_below (&rng, vsize); break;
  }
  if (off >= vsize)
    off = vsize - 1 - wt_below (&rng, vsize < 4096 ? vsize : 4096);
  return off;
}

/* A length from 1 byte to several clusters, often reaching or crossing a
 * (sub)cluster boundary, clamped to the image and max_len. */
static uint64_t
pick_len (uint64_t off)
{
  uint64_t n, to_sub = sub - off % sub, to_cl = cluster - off % cluster;

  switch (wt_below (&rng, 12)) {
  case 0: n = 1 + wt_below (&rng, 16); break;
  case 1: n = 512 * (1 + wt_below (&rng, 4)); break;
  case 2: n = sub * (1 + wt_below (&rng, 3)); break;
  case 3: n = cluster; break;
  case 4: n = cluster * (2 + wt_below (&rng, 3)) + wt_below (&rng, 33) - 16; break;
  case 5: n = to_sub; break;
  case 6: n = to_cl; break;
  case 7: n = to_cl + 1 + wt_below (&rng, 16); break;
  case 8: n = to_sub + sub; break;
  case 9: n = to_cl + cluster * wt_below (&rng, 3); break;
  default: n = 1 + wt_below (&rng, 3 * (uint64_t) cluster); break;
  }
  if (n == 0 || n > (1ULL << 62))
    n = 1;
  if (n > o.max_len)
    n = o.max_len;
  if (n > vsize - off)
    n = vsize - off;
  return n;
}

/* ---- operations ------------------------------------------------------- */

static void
op_failed (const char *what, int r)
{
  wt_die ("%s: op %" PRIu64 " (%s): %s failed: %s (%s) (seed %" PRIu64 ")",
          image, op_no, op_desc, what, wt_err (), strerror (-r), o.seed);
}

static void
do_write (void)
{
  uint64_t off = pick_off (), n = pick_len (off);
  enum wt_fill kind = (enum wt_fill) wt_below (&rng, WT_NFILL);
  int r;

  if (wt_chance (&rng, 5))
    kind = WT_ZERO;          /* zeroes written as data */
  snprintf (op_desc, sizeof op_desc, "pwrite %" PRIu64 "+%" PRIu64 " fill %d",
            off, n, (int) kind);
  if (o.log)
    printf ("%" PRIu64 ": %s\n", op_no, op_desc);
  ensure_rbuf (n);
  wt_fill (&rng, rbuf, n, kind);
  memcpy (model + off, rbuf, n);
  r = fops->pwrite (st, rbuf, n, off);
  if (r < 0)
    op_failed ("pwrite", r);
  cnt.write++;
}

static void
do_compressed (void)
{
  uint64_t nclusters = (vsize + cluster - 1) / cluster;
  uint64_t c0 = wt_below (&rng, nclusters);
  uint64_t off = c0 * cluster;
  uint64_t n = cluster * (1 + (wt_chance (&rng, 30) ? wt_below (&rng, 3) : 0));
  unsigned k = (unsigned) wt_below (&rng, 10);
  enum wt_fill kind = k < 6 ? WT_PHRASES : k < 8 ? WT_BYTE
                      : k < 9 ? WT_RANDOM : WT_ZERO;
  int r;

  if (n > vsize - off)
    n = vsize - off;         /* reaching the virtual size */
  snprintf (op_desc, sizeof op_desc,
            "pwrite_compressed %" PRIu64 "+%" PRIu64 " fill %d", off, n,
            (int) kind);
  if (o.log)
    printf ("%" PRIu64 ": %s\n", op_no, op_desc);
  ensure_rbuf (n);
  wt_fill (&rng, rbuf, n, kind);
  memcpy (model + off, rbuf, n);
  r = fops->pwrite_compressed (st, rbuf, n, off);
  if (r < 0)
    op_failed ("pwrite_compressed", r);
  cnt.compressed++;
}

static void
do_zero (bool discard)
{
  uint64_t off, n;
  int r;

  if (wt_chance (&rng, 40)) {
    /* (sub)cluster-aligned ranges, the common case for jobs */
    uint64_t unit = wt_chance (&rng, 50) ? sub : cluster;
    off = wt_below (&rng, (vsize + unit - 1) / unit) * unit;
    n = unit * (1 + wt_below (&rng, 4));
  }
  else {
    off = pick_off ();
    n = pick_len (off);
  }
  if (n > vsize - off)
    n = vsize - off;
  snprintf (op_desc, sizeof op_desc, "%s %" PRIu64 "+%" PRIu64,
            discard ? "discard" : "zero", off, n);
  if (o.log)
    printf ("%" PRIu64 ": %s\n", op_no, op_desc);
  memset (model + off, 0, n);
  r = discard ? fops->discard (st, off, n) : fops->zero (st, off, n);
  if (r < 0)
    op_failed (discard ? "discard" : "zero", r);
  if (discard)
    cnt.discard++;
  else
    cnt.zero++;
}

static void
do_flush (void)
{
  int r;

  snprintf (op_desc, sizeof op_desc, "flush");
  if (o.log)
    printf ("%" PRIu64 ": flush\n", op_no);
  r = fops->flush (st);
  if (r < 0)
    op_failed ("flush", r);
  cnt.flush++;
}

static void
do_resize (void)
{
  uint64_t grow = 512 * (1 + wt_below (&rng, 8))
                  + cluster * wt_below (&rng, 4);
  uint64_t nsize = vsize + grow;
  struct qc_info info;
  unsigned char *m;
  int r;

  if (wt_chance (&rng, 50))      /* often cluster-aligned */
    nsize = (nsize + cluster - 1) / cluster * cluster;
  snprintf (op_desc, sizeof op_desc, "resize %" PRIu64 " -> %" PRIu64,
            vsize, nsize);
  if (o.log)
    printf ("%" PRIu64 ": %s\n", op_no, op_desc);
  r = fops->resize (st, nsize);
  if (r < 0)
    op_failed ("resize", r);
  m = realloc (model, nsize);
  if (m == NULL)
    wt_die ("out of memory");
  model = m;
  memset (model + vsize, 0, nsize - vsize);
  /* The chain described the layer at open: tell it the new size. */
  memset (&info, 0, sizeof info);
  info.struct_size = sizeof info;
  fops->describe (st, &info);
  if (info.virtual_size != nsize)
    wt_die ("%s: op %" PRIu64 " (%s): virtual size is %" PRIu64
            " after resize", image, op_no, op_desc, info.virtual_size);
  ch->layers[0].info.virtual_size = nsize;
  vsize = nsize;
  cnt.resize++;
}

/* Read back around the last op, or a random range. */
static void
spot_check (uint64_t last_off, uint64_t last_len)
{
  uint64_t off, n;

  if (last_len && wt_chance (&rng, 60)) {
    off = last_off >= cluster ? last_off - cluster : 0;
    n = last_len + 2 * (uint64_t) cluster;
  }
  else {
    off = pick_off ();
    n = pick_len (off) + wt_below (&rng, 4 * (uint64_t) cluster);
  }
  if (off >= vsize)
    off = 0;
  if (n > vsize - off)
    n = vsize - off;
  verify_range (ch, off, n, "read-back");
}

static uint64_t
parse_last (uint64_t *len)
{
  /* op_desc is "<name> OFF+LEN ...": recover the range for spot checks */
  const char *p = strchr (op_desc, ' ');
  uint64_t off = 0;

  *len = 0;
  if (p && sscanf (p + 1, "%" SCNu64 "+%" SCNu64, &off, len) != 2)
    *len = 0;
  return off;
}

int
main (int argc, char **argv)
{
  uint64_t i, full_every, n;
  struct chain_policy ro = { .format = "qcow2" };
  char *mpath = NULL;
  int r;

  wt_prog = "random-write";
  parse_options (argc, argv);
  rng.s = o.seed * 0x2545f4914f6cdd1dULL + 12345;

  if (!o.existing)
    create_image ();
  open_image ();
  if (o.max_len == 0)
    o.max_len = 8 * (uint64_t) cluster > (1 << 20) ? 8 * (uint64_t) cluster
                                                   : (1 << 20);

  /* The model starts as the guest view: the backing's, or (--existing)
   * the image's own. */
  model = malloc (vsize);
  if (model == NULL)
    wt_die ("out of memory");
  snprintf (op_desc, sizeof op_desc, "initial read");
  r = chain_read (ch, 0, model, vsize, 0);
  if (r < 0)
    wt_die ("%s: initial chain_read: %s", image, wt_err ());
  if (o.expect_initial) {
    FILE *f = fopen (o.expect_initial, "rb");
    unsigned char *e = calloc (1, vsize);
    int64_t d;

    if (f == NULL || e == NULL)
      wt_die ("%s: %m", o.expect_initial);
    n = fread (e, 1, vsize, f);
    fclose (f);
    (void) n;
    d = wt_first_diff (model, e, vsize);
    if (d >= 0)
      wt_die ("%s: initial guest view differs from %s at offset %" PRId64
              ": read 0x%02x, expected 0x%02x", image, o.expect_initial, d,
              model[d], e[d]);
    free (e);
  }

  full_every = o.ops / 6 + 1;
  for (i = 0; i < o.ops; i++) {
    unsigned k = (unsigned) wt_below (&rng, 100);
    uint64_t loff, llen;

    op_no = i;
    if (k < 3)
      do_flush ();
    else if (k < 4 && o.resize)
      do_resize ();
    else if (k < 16)
      do_zero (false);
    else if (k < 26)
      do_zero (true);
    else if (o.compress_pct && wt_chance (&rng, o.compress_pct))
      do_compressed ();
    else
      do_write ();
    loff = parse_last (&llen);
    if (wt_chance (&rng, o.verify_pct))
      spot_check (loff, llen);
    if ((i + 1) % full_every == 0)
      verify_range (ch, 0, vsize, "full read-back");
  }

  op_no = o.ops;
  snprintf (op_desc, sizeof op_desc, "final flush");
  r = fops->flush (st);
  if (r < 0)
    op_failed ("flush", r);
  verify_range (ch, 0, vsize, "read-back after the final flush");
  chain_close (ch);
  ch = NULL;

  /* What reached the file, read by a fresh open. */
  snprintf (op_desc, sizeof op_desc, "reopen");
  WT_CALL ("chain_open (read-only, after close)", chain_open (image, &ro, &ch));
  if (ch->layers[0].info.virtual_size != vsize)
    wt_die ("%s: virtual size %" PRIu64 " after reopen, expected %" PRIu64,
            image, ch->layers[0].info.virtual_size, vsize);
  verify_range (ch, 0, vsize, "read-back after reopen");
  cnt.full++;
  chain_close (ch);

  if (o.model_path == NULL) {
    if (asprintf (&mpath, "%s.model.raw", image) < 0)
      wt_die ("out of memory");
  }
  r = wt_write_file (o.model_path ? o.model_path : mpath, model, vsize);
  if (r < 0)
    wt_die ("%s: %s", o.model_path ? o.model_path : mpath, strerror (-r));
  printf ("random-write %s: %" PRIu64 " ops (write %" PRIu64 ", compressed %"
          PRIu64 ", zero %" PRIu64 ", discard %" PRIu64 ", flush %" PRIu64
          ", resize %" PRIu64 "), %" PRIu64 " read-backs (%" PRIu64
          " MiB), size %" PRIu64 ", cluster %" PRIu32 "\n",
          image, o.ops, cnt.write, cnt.compressed, cnt.zero, cnt.discard,
          cnt.flush, cnt.resize, cnt.verify, cnt.verified_bytes >> 20, vsize,
          cluster);
  free (mpath);
  free (model);
  free (rbuf);
  return 0;
}
