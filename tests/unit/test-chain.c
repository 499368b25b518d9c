/* Unit tests for chain/chain.c and chain/status.c on chains built by qemu-img. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "byte-order.h"
#include "errors.h"
#include "rounding.h"
#include "chain.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

#include "unit-shell.h"

static void
policy_init (struct chain_policy *p)
{
  memset (p, 0, sizeof *p);
}

/* Open expecting failure with err; the message must contain part. */
static void
open_fails (const char *path, const struct chain_policy *p, int err,
            const char *part)
{
  struct chain *c = NULL;
  int r;

  clear_error ();
  r = chain_open (path, p, &c);
  if (r != -err)
    fail_msg ("chain_open (%s) = %d, want %d (%s)", path, r, -err,
              qc_get_error () ? qc_get_error () : "no message");
  assert_null (c);
  assert_int_equal (qc_get_errno (), err);
  if (strstr (qc_get_error (), part) == NULL)
    fail_msg ("message '%s' lacks '%s'", qc_get_error (), part);
}

static struct chain *
open_ok (const char *path, const struct chain_policy *p)
{
  struct chain *c = NULL;

  clear_error ();
  if (chain_open (path, p, &c) != 0)
    fail_msg ("chain_open (%s): %s", path, qc_get_error ());
  assert_non_null (c);
  return c;
}

/* Hide the backing-format header extension by renaming its magic to one
 * nobody knows, which readers must skip. */
static void
drop_backing_format (const char *path)
{
  unsigned char buf[4096];
  size_t i;
  int fd = open (path, O_RDWR);

  assert_true (fd >= 0);
  assert_int_equal (pread (fd, buf, sizeof buf, 0), (ssize_t) sizeof buf);
  for (i = 72; i + 4 <= sizeof buf; i += 8)
    if (get_be32 (buf + i) == 0xE2792ACA)
      break;
  assert_true (i + 4 <= sizeof buf);
  put_be32 (buf + i, 0x7a7a7a7a);
  assert_int_equal (pwrite (fd, buf + i, 4, (off_t) i), 4);
  close (fd);
}

/* ---- opening ---- */

static void
test_backing_format_ext (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("mkdir dir && qemu-img create -q -f raw dir/base.raw 4M"
      " && qemu-img create -q -f qcow2 -b base.raw -F raw dir/s1.qcow2"
      " && qemu-img create -q -f qcow2 -b s1.qcow2 -F qcow2 dir/s2.qcow2");
  policy_init (&p);
  c = open_ok ("dir/s2.qcow2", &p);
  assert_int_equal (c->n, 3);
  assert_ptr_equal (c->layers[0].ops, &qcow2_format);
  assert_ptr_equal (c->layers[1].ops, &qcow2_format);
  assert_ptr_equal (c->layers[2].ops, &raw_format);
  assert_string_equal (c->layers[0].path, "dir/s2.qcow2");
  assert_null (c->layers[0].written_name);
  assert_string_equal (c->layers[1].path, "dir/s1.qcow2");
  assert_string_equal (c->layers[1].written_name, "s1.qcow2");
  assert_string_equal (c->layers[2].path, "dir/base.raw");
  assert_string_equal (c->layers[2].written_name, "base.raw");
  assert_string_equal (c->layers[0].info.filename, "dir/s2.qcow2");
  assert_string_equal (c->layers[0].info.format, "qcow2");
  assert_string_equal (c->layers[0].info.backing_filename, "s1.qcow2");
  assert_string_equal (c->layers[0].info.backing_format, "qcow2");
  assert_string_equal (c->layers[0].info.full_backing_filename,
                       "dir/s1.qcow2");
  assert_string_equal (c->layers[1].info.full_backing_filename,
                       "dir/base.raw");
  assert_null (c->layers[2].info.full_backing_filename);
  assert_string_equal (c->layers[2].info.format, "raw");
  assert_int_equal (c->layers[2].info.virtual_size, 4 * MiB);
  assert_int_equal (c->layers[0].info.virtual_size, 4 * MiB);
  assert_true (c->layers[0].info.actual_size > 0);
  chain_close (c);

  /* Only the top with no_backing, its backing still described. */
  p.no_backing = true;
  c = open_ok ("dir/s2.qcow2", &p);
  assert_int_equal (c->n, 1);
  assert_string_equal (c->layers[0].info.full_backing_filename,
                       "dir/s1.qcow2");
  chain_close (c);

  /* The top format can be forced, and must be known. */
  policy_init (&p);
  p.format = "raw";
  c = open_ok ("dir/s2.qcow2", &p);
  assert_int_equal (c->n, 1);
  assert_ptr_equal (c->layers[0].ops, &raw_format);
  chain_close (c);
  p.format = "vmdk";
  open_fails ("dir/s2.qcow2", &p, EINVAL, "unknown format 'vmdk'");
}

static void
test_format_missing (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("qemu-img create -q -f raw base.raw 1M"
      " && qemu-img create -q -f qcow2 base.qcow2 1M"
      " && qemu-img create -q -f qcow2 -b base.raw -F raw s1.qcow2"
      " && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 s2.qcow2");
  drop_backing_format ("s1.qcow2");
  drop_backing_format ("s2.qcow2");
  policy_init (&p);
  clear_error ();
  assert_int_equal (chain_open ("s1.qcow2", &p, &c), -EINVAL);
  assert_string_equal (qc_get_error (),
                       "s1.qcow2: backing file 'base.raw' has no backing "
                       "format; pass -F or allow probing");
  p.probe = true;
  c = open_ok ("s1.qcow2", &p);
  assert_int_equal (c->n, 2);
  assert_ptr_equal (c->layers[1].ops, &raw_format);
  assert_null (c->layers[0].info.backing_format);
  chain_close (c);
  c = open_ok ("s2.qcow2", &p);
  assert_int_equal (c->n, 2);
  assert_ptr_equal (c->layers[1].ops, &qcow2_format);
  chain_close (c);
}

static void
test_format_unsupported (void **state)
{
  struct chain_policy p;

  sh ("qemu-img create -q -f raw base 1M"
      " && qemu-img create -q -f qcow2 -u -b base -F vmdk s1.qcow2 1M");
  policy_init (&p);
  open_fails ("s1.qcow2", &p, ENOTSUP, "unsupported format 'vmdk'");
  p.probe = true;               /* probing never overrides a written format */
  open_fails ("s1.qcow2", &p, ENOTSUP, "unsupported format 'vmdk'");
}

static void
test_loop_symlink (void **state)
{
  struct chain_policy p;

  sh ("ln -s c.qcow2 link.qcow2"
      " && qemu-img create -q -f qcow2 -u -b link.qcow2 -F qcow2 c.qcow2 1M");
  policy_init (&p);
  open_fails ("c.qcow2", &p, ELOOP,
              "backing chain loop: link.qcow2 is already in the chain as "
              "c.qcow2");
  /* The plain self-reference too. */
  sh ("qemu-img create -q -f qcow2 self.qcow2 1M"
      " && qemu-img rebase -q -u -b self.qcow2 -F qcow2 self.qcow2");
  open_fails ("self.qcow2", &p, ELOOP, "backing chain loop");
}

static void
test_loop_two (void **state)
{
  struct chain_policy p;

  sh ("qemu-img create -q -f qcow2 a.qcow2 1M"
      " && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2"
      " && qemu-img rebase -q -u -b b.qcow2 -F qcow2 a.qcow2"
      " && mkdir sub && ln -s ../a.qcow2 sub/x.qcow2");
  policy_init (&p);
  open_fails ("b.qcow2", &p, ELOOP,
              "a.qcow2: backing chain loop: b.qcow2 is already in the chain "
              "as b.qcow2");
  /* Names resolve against the overlay's path as spelled, not its target
   * (as in qemu), so through sub/ the loop is a missing file. */
  open_fails ("sub/x.qcow2", &p, ENOENT, "resolved to sub/b.qcow2");
  p.max_depth = 1000;
  open_fails ("a.qcow2", &p, ELOOP, "is already in the chain as a.qcow2");
}

static void
test_depth_limit (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("qemu-img create -q -f qcow2 l0.qcow2 1M"
      " && for i in 1 2 3 4; do qemu-img create -q -f qcow2 -b l$((i-1)).qcow2"
      " -F qcow2 l$i.qcow2 || exit 1; done");
  policy_init (&p);
  p.max_depth = 4;
  open_fails ("l4.qcow2", &p, ELOOP, "l4.qcow2: chain is deeper than 4 layers");
  p.max_depth = 5;
  c = open_ok ("l4.qcow2", &p);
  assert_int_equal (c->n, 5);
  chain_close (c);
  p.max_depth = 0;              /* the default, 256 */
  c = open_ok ("l4.qcow2", &p);
  assert_int_equal (c->n, 5);
  chain_close (c);
  p.max_depth = 1;
  open_fails ("l1.qcow2", &p, ELOOP, "chain is deeper than 1 layers");
  p.no_backing = true;
  c = open_ok ("l1.qcow2", &p);
  assert_int_equal (c->n, 1);
  chain_close (c);
}

static void
test_confinement (void **state)
{
  const char *dir = *state;
  char allowed[PATH_MAX], other[PATH_MAX];
  char *dirs[2] = { allowed, other };
  struct chain_policy p;
  struct chain *c;

  sh ("mkdir in out && qemu-img create -q -f qcow2 out/base.qcow2 1M"
      " && qemu-img create -q -f qcow2 in/b2.qcow2 1M"
      " && qemu-img create -q -f qcow2 -b ../out/base.qcow2 -F qcow2 in/s1.qcow2"
      " && ln -s ../out/base.qcow2 in/sneaky.qcow2"
      " && qemu-img create -q -f qcow2 -b sneaky.qcow2 -F qcow2 in/s2.qcow2"
      " && qemu-img create -q -f qcow2 -b b2.qcow2 -F qcow2 in/s3.qcow2");
  snprintf (allowed, sizeof allowed, "%s/in", dir);
  snprintf (other, sizeof other, "%s/in2", dir);
  policy_init (&p);
  p.allowed_dirs = dirs;
  p.n_allowed_dirs = 1;
  open_fails ("in/s1.qcow2", &p, EACCES,
              "in/s1.qcow2: backing file 'in/../out/base.qcow2'");
  open_fails ("in/s2.qcow2", &p, EACCES, "outside the allowed directories");
  c = open_ok ("in/s3.qcow2", &p);
  assert_int_equal (c->n, 2);
  chain_close (c);
  /* A second allowed dir lets the first chain through. */
  snprintf (other, sizeof other, "%s/out", dir);
  p.n_allowed_dirs = 2;
  c = open_ok ("in/s1.qcow2", &p);
  assert_int_equal (c->n, 2);
  chain_close (c);
}

static void
test_missing_backing (void **state)
{
  struct chain_policy p;

  sh ("mkdir d && qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2"
      " d/s1.qcow2 1M");
  policy_init (&p);
  open_fails ("d/s1.qcow2", &p, ENOENT,
              "d/s1.qcow2: backing file 'gone.qcow2' does not exist "
              "(resolved to d/gone.qcow2)");
  open_fails ("d/nothing.qcow2", &p, ENOENT, "d/nothing.qcow2");
  /* A FIFO or a character device named as backing file is never opened. */
  sh ("mkfifo d/fifo && qemu-img create -q -f qcow2 -u -b fifo -F raw"
      " d/f.qcow2 1M && qemu-img create -q -f qcow2 -u -b /dev/null -F raw"
      " d/n.qcow2 1M && qemu-img create -q -f qcow2 -u -b . -F raw"
      " d/dot.qcow2 1M");
  open_fails ("d/f.qcow2", &p, EINVAL,
              "d/f.qcow2: backing file 'd/fifo' is not a regular file");
  open_fails ("d/n.qcow2", &p, EINVAL, "not a regular file or block device");
  open_fails ("d/dot.qcow2", &p, EINVAL, "not a regular file or block device");
}

/* stop_at_missing: a missing backing file ends the chain (cut) instead of
 * failing it; other bad backing files still fail. */
static void
test_stop_at_missing (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("mkdir d && qemu-img create -q -f qcow2 d/b.qcow2 1M"
      " && qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2 d/m.qcow2 1M"
      " && qemu-img create -q -f qcow2 -u -b m.qcow2 -F qcow2 d/t.qcow2 1M"
      " && qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 d/whole.qcow2 1M"
      " && mkfifo d/fifo && qemu-img create -q -f qcow2 -u -b fifo -F raw"
      " d/f.qcow2 1M");
  policy_init (&p);
  p.stop_at_missing = true;
  c = open_ok ("d/t.qcow2", &p);
  assert_int_equal (c->n, 2);
  assert_true (c->cut);
  assert_string_equal (c->layers[1].backing_path, "d/gone.qcow2");
  chain_close (c);
  c = open_ok ("d/whole.qcow2", &p);
  assert_int_equal (c->n, 2);
  assert_false (c->cut);
  chain_close (c);
  open_fails ("d/f.qcow2", &p, EINVAL, "not a regular file or block device");
  p.stop_at_missing = false;
  open_fails ("d/t.qcow2", &p, ENOENT, "does not exist");
}

static void
test_bad_names (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("qemu-img create -q -f qcow2 -u -b 'nbd:host:10809' -F raw n.qcow2 1M"
      " && qemu-img create -q -f qcow2 -u -b 'json:{\"file.filename\":\"x\"}'"
      " -F raw j.qcow2 1M"
      " && qemu-img create -q -f qcow2 -u -b 'file:base' -F raw f.qcow2 1M"
      " && qemu-img create -q -f qcow2 -u -b \"$(printf 'a\\033b')\" -F raw"
      " e.qcow2 1M");
  policy_init (&p);
  open_fails ("n.qcow2", &p, EINVAL,
              "n.qcow2: backing file name 'nbd:host:10809' is a protocol, "
              "not a local path");
  open_fails ("j.qcow2", &p, EINVAL, "json: specification");
  open_fails ("f.qcow2", &p, EINVAL, "'file:base' is a protocol");
  open_fails ("e.qcow2", &p, EINVAL, "control character 0x1b");
  /* Not following the backing file, the top is still readable. */
  p.no_backing = true;
  c = open_ok ("n.qcow2", &p);
  assert_int_equal (c->n, 1);
  assert_string_equal (c->layers[0].info.backing_filename, "nbd:host:10809");
  assert_null (c->layers[0].info.full_backing_filename);
  chain_close (c);
}

static void
test_find (void **state)
{
  const char *dir = *state;
  char abs[PATH_MAX];
  struct chain_policy p;
  struct chain *c;

  sh ("mkdir d && qemu-img create -q -f qcow2 d/base.qcow2 1M"
      " && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 d/mid.qcow2"
      " && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 d/top.qcow2"
      " && ln -s d/base.qcow2 alias.qcow2");
  policy_init (&p);
  c = open_ok ("d/top.qcow2", &p);
  assert_int_equal (c->n, 3);
  assert_int_equal (chain_find (c, "@0"), 0);
  assert_int_equal (chain_find (c, "@2"), 2);
  assert_int_equal (chain_find (c, "@002"), 2);
  clear_error ();
  assert_int_equal (chain_find (c, "@3"), -ENOENT);
  assert_non_null (strstr (qc_get_error (), "@3: not in the backing chain of "
                           "d/top.qcow2"));
  assert_int_equal (chain_find (c, "@99999999999999999999999"), -ENOENT);
  assert_int_equal (chain_find (c, "mid.qcow2"), 1);
  assert_int_equal (chain_find (c, "base.qcow2"), 2);
  assert_int_equal (chain_find (c, "d/base.qcow2"), 2);
  assert_int_equal (chain_find (c, "d/top.qcow2"), 0);
  assert_int_equal (chain_find (c, "./d/../d/mid.qcow2"), 1);
  assert_int_equal (chain_find (c, "alias.qcow2"), 2);
  snprintf (abs, sizeof abs, "%s/d/top.qcow2", dir);
  assert_int_equal (chain_find (c, abs), 0);
  clear_error ();
  assert_int_equal (chain_find (c, "nothing.qcow2"), -ENOENT);
  assert_string_equal (qc_get_error (),
                       "nothing.qcow2: not in the backing chain of d/top.qcow2");
  /* "@x" is a name like any other. */
  assert_int_equal (chain_find (c, "@x"), -ENOENT);
  chain_close (c);
}

/* ---- the guest view ---- */

struct want {
  uint64_t start, length;
  unsigned depth;
  int present, zero, data, has_offset;
  uint64_t offset;
};

/* qemu-img map's merging of adjacent extents. */
static bool
mergeable (const struct qc_extent *a, const struct qc_extent *b)
{
  if (a->depth != b->depth || a->present != b->present || a->zero != b->zero
      || a->data != b->data || a->has_offset != b->has_offset)
    return false;
  return !a->has_offset || a->offset + a->length == b->offset;
}

/* The merged map of layer depth, as qemu-img map --output=json prints it
 * (depths relative to that layer), one entry a line. */
static char *
map_json (struct chain *c, unsigned depth)
{
  uint64_t size = c->layers[depth].info.virtual_size, off = 0;
  struct qc_extent cur = { 0 }, e = { 0 };
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream (&out, &outlen);
  bool have = false;

  assert_non_null (f);
  while (off < size || have) {
    bool flush = off >= size;
    if (!flush) {
      if (chain_block_status (c, depth, off, size - off, &e) != 0)
        fail_msg ("chain_block_status at %" PRIu64 ": %s", off,
                  qc_get_error ());
      assert_int_equal (e.start, off);
      assert_true (e.length > 0 && e.length <= size - off);
      off += e.length;
      if (have && mergeable (&cur, &e)) {
        cur.length += e.length;
        continue;
      }
    }
    if (have) {
      fprintf (f, "{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
               ", \"depth\": %u, \"present\": %s, \"zero\": %s, "
               "\"data\": %s", cur.start, cur.length, cur.depth - depth,
               cur.present ? "true" : "false", cur.zero ? "true" : "false",
               cur.data ? "true" : "false");
      if (cur.has_offset)
        fprintf (f, ", \"offset\": %" PRIu64, cur.offset);
      fprintf (f, "}\n");
    }
    have = !flush;
    cur = e;
  }
  fclose (f);
  return out;
}

/* qemu-img map's output in the same one-entry-a-line form. */
static char *
qemu_map_json (const char *path, const char *fmt)
{
  char cmd[PATH_MAX + 64], line[512];
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream (&out, &outlen), *q;

  snprintf (cmd, sizeof cmd, "qemu-img map -f %s --output=json '%s'", fmt,
            path);
  q = popen (cmd, "r");
  assert_non_null (q);
  while (fgets (line, sizeof line, q)) {
    char *s = line, *end = line + strlen (line);
    while (end > s && (end[-1] == '\n' || end[-1] == ',' || end[-1] == ']'))
      *--end = '\0';
    if (*s == '[')
      s++;
    if (*s)
      fprintf (f, "%s\n", s);
  }
  assert_int_equal (pclose (q), 0);
  fclose (f);
  return out;
}

static void
assert_map_like_qemu (struct chain *c, unsigned depth, const char *fmt)
{
  char *ours = map_json (c, depth);
  char *theirs = qemu_map_json (c->layers[depth].path, fmt);

  if (strcmp (ours, theirs) != 0)
    fail_msg ("map of %s differs from qemu-img:\n--- qchain\n%s--- qemu-img\n%s",
              c->layers[depth].path, ours, theirs);
  free (ours);
  free (theirs);
}

/* The guest view read in uneven pieces equals qemu-img convert's output. */
static void
assert_read_like_qemu (struct chain *c, unsigned depth, const char *fmt)
{
  uint64_t size = c->layers[depth].info.virtual_size, off;
  unsigned char *ours = malloc (size), *theirs = malloc (size);
  size_t piece = 200 * KiB + 512;
  int fd;

  assert_true (ours && theirs);
  sh ("rm -f conv.raw && qemu-img convert -f %s -O raw '%s' conv.raw", fmt,
      c->layers[depth].path);
  fd = open ("conv.raw", O_RDONLY);
  assert_true (fd >= 0);
  memset (theirs, 0, size);
  assert_true (pread (fd, theirs, size, 0) >= 0);
  close (fd);
  memset (ours, 0x55, size);
  for (off = 0; off < size; off += piece) {
    size_t n = (size_t) (size - off < piece ? size - off : piece);
    if (chain_read (c, depth, ours + off, n, off) != 0)
      fail_msg ("chain_read at %" PRIu64 ": %s", off, qc_get_error ());
  }
  for (off = 0; off < size; off++)
    if (ours[off] != theirs[off])
      fail_msg ("%s: guest byte %" PRIu64 " is 0x%02x, qemu reads 0x%02x",
                c->layers[depth].path, off, ours[off], theirs[off]);
  /* One read of the whole view too. */
  assert_int_equal (chain_read (c, depth, ours, size, 0), 0);
  assert_memory_equal (ours, theirs, size);
  free (ours);
  free (theirs);
}

/* base.raw (4M, data 0-64K) <- s1.qcow2 (8M; data 1M, zero 2M, compressed 3M) */
static struct chain *
make_example (void)
{
  struct chain_policy p;

  sh ("qemu-img create -q -f raw base.raw 4M"
      " && qemu-io -f raw -c 'write -P 0x11 0 64k' base.raw >/dev/null"
      " && qemu-img create -q -f qcow2 -b base.raw -F raw s1.qcow2 8M"
      " && qemu-io -f qcow2 -c 'write -P 0x22 1M 64k' -c 'write -z 2M 64k'"
      " -c 'write -c -P 0x33 3M 64k' s1.qcow2 >/dev/null");
  policy_init (&p);
  return open_ok ("s1.qcow2", &p);
}

static void
test_status_example (void **state)
{
  static const struct want want[] = {
    { 0, 64 * KiB, 1, 1, 0, 1, 1, 0 },
    { 64 * KiB, 960 * KiB, 1, 1, 1, 0, 1, 64 * KiB },
    { 1 * MiB, 64 * KiB, 0, 1, 0, 1, 1, 327680 },
    { 1 * MiB + 64 * KiB, 960 * KiB, 1, 1, 1, 0, 1, 1 * MiB + 64 * KiB },
    { 2 * MiB, 64 * KiB, 0, 1, 1, 0, 0, 0 },
    { 2 * MiB + 64 * KiB, 960 * KiB, 1, 1, 1, 0, 1, 2 * MiB + 64 * KiB },
    { 3 * MiB, 64 * KiB, 0, 1, 0, 1, 0, 0 },
    { 3 * MiB + 64 * KiB, 960 * KiB, 1, 1, 1, 0, 1, 3 * MiB + 64 * KiB },
    { 4 * MiB, 4 * MiB, 0, 0, 1, 0, 0, 0 },
  };
  struct chain *c = make_example ();
  struct qc_extent e;
  size_t i;

  for (i = 0; i < sizeof want / sizeof want[0]; i++) {
    const struct want *w = &want[i];
    uint64_t off = w->start, end = w->start + w->length;

    /* Unmerged extents may be shorter; each piece must agree. */
    while (off < end) {
      assert_int_equal (chain_block_status (c, 0, off, end - off, &e), 0);
      assert_int_equal (e.start, off);
      assert_true (e.length > 0 && e.length <= end - off);
      assert_int_equal (e.depth, w->depth);
      assert_int_equal (e.present, w->present);
      assert_int_equal (e.zero, w->zero);
      assert_int_equal (e.data, w->data);
      assert_int_equal (e.has_offset, w->has_offset);
      if (w->has_offset)
        assert_int_equal (e.offset, w->offset + (off - w->start));
      off += e.length;
    }
  }
  /* A query running past the base's end stops at the base's end. */
  assert_int_equal (chain_block_status (c, 0, 3 * MiB + 64 * KiB, 4 * MiB, &e),
                    0);
  assert_true (e.start + e.length <= 4 * MiB);
  assert_int_equal (e.depth, 1);
  /* Out of range queries are refused. */
  assert_int_equal (chain_block_status (c, 0, 8 * MiB, 1, &e), -EINVAL);
  assert_int_equal (chain_block_status (c, 1, 4 * MiB, 1, &e), -EINVAL);
  assert_int_equal (chain_block_status (c, 2, 0, 1, &e), -EINVAL);
  assert_map_like_qemu (c, 0, "qcow2");
  assert_map_like_qemu (c, 1, "raw");
  chain_close (c);
}

/* One query through the cursor: what it says of every byte it covers is
 * what the layers say, asked without it. Lengths may differ: either answer
 * may end early (a remembered run ends where it was asked to). */
static void
cursor_agrees (struct chain *c, struct chain_cursor *cur, unsigned depth,
               unsigned stop, uint64_t off, uint64_t len)
{
  struct qc_extent a, b;
  uint64_t at;

  assert_int_equal (chain_block_status_cur (c, cur, depth, stop, off, len, &b),
                    0);
  assert_int_equal (b.start, off);
  assert_true (b.length > 0 && b.length <= len);
  for (at = off; at < off + b.length; at += a.length) {
    assert_int_equal (chain_block_status_above (c, depth, stop, at,
                                                off + b.length - at, &a), 0);
    assert_int_equal (a.depth, b.depth);
    assert_int_equal (a.present, b.present);
    assert_int_equal (a.zero, b.zero);
    assert_int_equal (a.data, b.data);
    assert_int_equal (a.has_offset, b.has_offset);
    if (a.has_offset)
      assert_int_equal (a.offset, b.offset + (at - off));
  }
}

/* The cursor answers what the layers answer, in offset order (extent by
 * extent, and in small steps inside extents) and out of it. */
static void
test_cursor (void **state)
{
  struct chain_policy p;
  struct chain_cursor cur;
  struct chain *c;
  uint64_t size, off, x = 12345;
  unsigned stop, i;

  sh ("qemu-img create -q -f raw base.raw 4M"
      " && qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'write -P 1 3M 8k'"
      " base.raw >/dev/null"
      " && qemu-img create -q -f qcow2 -b base.raw -F raw s1.qcow2 8M"
      " && qemu-io -f qcow2 -c 'write -P 0x22 1M 64k' -c 'write -z 2M 64k'"
      " -c 'write -c -P 0x33 3M 128k' -c 'write -P 4 5M 1M' s1.qcow2 >/dev/null"
      " && qemu-img create -q -f qcow2 -o cluster_size=4k -b s1.qcow2"
      " -F qcow2 top.qcow2"
      " && qemu-io -f qcow2 -c 'write -P 5 1M 4k' -c 'write -z 5M 8k'"
      " -c 'write -P 6 7M 12k' top.qcow2 >/dev/null");
  policy_init (&p);
  c = open_ok ("top.qcow2", &p);
  size = c->layers[0].info.virtual_size;
  for (stop = 1; stop <= c->n; stop++) {
    struct qc_extent e;
    assert_int_equal (chain_cursor_init (&cur, c), 0);
    for (off = 0; off < size; off += e.length) {
      cursor_agrees (c, &cur, 0, stop, off, size - off);
      assert_int_equal (chain_block_status_above (c, 0, stop, off, size - off,
                                                  &e), 0);
    }
    for (off = 0; off < size; off += 3 * 4096 + 512)
      cursor_agrees (c, &cur, 0, stop, off, MIN (size - off, 20000));
    for (i = 0; i < 2000; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      off = (x >> 20) % size;
      cursor_agrees (c, &cur, 0, stop, off, 1 + (x >> 8) % (size - off));
    }
    chain_cursor_free (&cur);
  }
  chain_close (c);
}

/* Each layer's driver, counted: the cursor must not ask a layer again
 * about what it has answered already. */
static const struct format_ops *counted_real;
static unsigned counted_calls;

static int
counted_status (void *st, uint64_t off, uint64_t len, struct layer_extent *e)
{
  counted_calls++;
  return counted_real->status (st, off, len, e);
}

/* A walk of a deep chain through the cursor asks each layer about each of
 * its runs about once: 8 layers of one cluster each, at different offsets,
 * have 3 runs each (a layer asked only about the run the layers above
 * left open was asked again at every extent: 51 calls here). */
static void
test_cursor_asks_once (void **state)
{
  static struct format_ops counted;
  struct chain_policy p;
  struct chain_cursor cur;
  struct chain *c;
  struct qc_extent e;
  uint64_t off, size, extents = 0;
  unsigned i;

  sh ("qemu-img create -q -f qcow2 l0.qcow2 16M"
      " && qemu-io -f qcow2 -c 'write -P 1 0 64k' l0.qcow2 >/dev/null");
  for (i = 1; i < 8; i++)
    sh ("qemu-img create -q -f qcow2 -b l%u.qcow2 -F qcow2 l%u.qcow2"
        " && qemu-io -f qcow2 -c 'write -P %u %uM 64k' l%u.qcow2 >/dev/null",
        i - 1, i, i + 1, 2 * i, i);
  policy_init (&p);
  c = open_ok ("l7.qcow2", &p);
  assert_int_equal (c->n, 8);
  counted_real = c->layers[0].ops;
  counted = *counted_real;
  counted.status = counted_status;
  for (i = 0; i < c->n; i++)
    c->layers[i].ops = &counted;
  size = c->layers[0].info.virtual_size;
  counted_calls = 0;
  assert_int_equal (chain_cursor_init (&cur, c), 0);
  for (off = 0; off < size; off += e.length, extents++)
    assert_int_equal (chain_block_status_cur (c, &cur, 0, c->n, off,
                                              size - off, &e), 0);
  chain_cursor_free (&cur);
  /* 8 data extents and the 8 gaps after them (the gap before the base's
   * cluster is none: it starts at 0). */
  assert_int_equal (extents, 16);
  if (counted_calls > 3 * c->n)
    fail_msg ("%u driver calls for %u layers of 3 runs each", counted_calls,
              c->n);
  for (i = 0; i < c->n; i++)
    c->layers[i].ops = counted_real;
  chain_close (c);
}

static void
test_read_example (void **state)
{
  struct chain *c = make_example ();
  unsigned char buf[128 * KiB];
  size_t i;

  assert_read_like_qemu (c, 0, "qcow2");
  assert_read_like_qemu (c, 1, "raw");
  /* Spot checks, and a read across the end of the short base. */
  assert_int_equal (chain_read (c, 0, buf, sizeof buf, 4 * MiB - 64 * KiB), 0);
  for (i = 0; i < sizeof buf; i++)
    assert_int_equal (buf[i], 0);
  assert_int_equal (chain_read (c, 0, buf, 4, 3 * MiB), 0);
  assert_memory_equal (buf, "\x33\x33\x33\x33", 4);
  assert_int_equal (chain_read (c, 0, buf, 4, 64 * KiB - 2), 0);
  assert_memory_equal (buf, "\x11\x11\0\0", 4);
  /* The base layer's view past its end reads as zero. */
  memset (buf, 0xff, sizeof buf);
  assert_int_equal (chain_read (c, 1, buf, 16, 4 * MiB - 8), 0);
  for (i = 0; i < 16; i++)
    assert_int_equal (buf[i], 0);
  assert_int_equal (chain_read (c, 3, buf, 16, 0), -EINVAL);
  chain_close (c);
}

/* A middle layer shorter than the layers around it. */
static void
test_short_middle (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("qemu-img create -q -f qcow2 base.qcow2 8M"
      " && qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 3M 128k'"
      " -c 'write -P 3 6M 64k' -c 'write -P 4 1984k 128k' base.qcow2 >/dev/null"
      " && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 2M"
      " && qemu-io -c 'write -P 5 1M 64k' -c 'write -z 1536k 64k' mid.qcow2"
      " >/dev/null"
      " && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 8M"
      " && qemu-io -c 'write -P 6 5M 64k' -c 'write -z 7M 64k'"
      " -c 'write -P 7 32k 4k' top.qcow2 >/dev/null");
  policy_init (&p);
  c = open_ok ("top.qcow2", &p);
  assert_int_equal (c->n, 3);
  assert_map_like_qemu (c, 0, "qcow2");
  assert_map_like_qemu (c, 1, "qcow2");
  assert_map_like_qemu (c, 2, "qcow2");
  assert_read_like_qemu (c, 0, "qcow2");
  assert_read_like_qemu (c, 1, "qcow2");
  chain_close (c);
}

/* A sparse raw image alone, and metadata preallocation, where the format
 * says data and the file says hole. */
static void
test_raw_and_prealloc (void **state)
{
  struct chain_policy p;
  struct chain *c;

  sh ("qemu-img create -q -f raw sparse.raw 3M"
      " && qemu-io -f raw -c 'write -P 9 1M 8k' -c 'write -P 8 2044k 4k'"
      " sparse.raw >/dev/null"
      " && qemu-img create -q -f qcow2 -o preallocation=metadata pm.qcow2 2M"
      " && qemu-io -c 'write -P 1 64k 64k' -c 'write -z 192k 64k' pm.qcow2"
      " >/dev/null"
      " && head -c 1000 /dev/urandom > odd.raw"
      " && qemu-img create -q -f qcow2 -b odd.raw -F raw odd.qcow2 8k");
  policy_init (&p);
  c = open_ok ("sparse.raw", &p);
  assert_ptr_equal (c->layers[0].ops, &raw_format);
  assert_map_like_qemu (c, 0, "raw");
  assert_read_like_qemu (c, 0, "raw");
  chain_close (c);
  c = open_ok ("pm.qcow2", &p);
  assert_map_like_qemu (c, 0, "qcow2");
  assert_read_like_qemu (c, 0, "qcow2");
  chain_close (c);
  /* qemu sizes a raw file in whole sectors; the tail reads as zeroes. */
  c = open_ok ("odd.qcow2", &p);
  assert_int_equal (c->layers[1].info.virtual_size, 1024);
  assert_map_like_qemu (c, 0, "qcow2");
  assert_map_like_qemu (c, 1, "raw");
  assert_read_like_qemu (c, 0, "qcow2");
  assert_read_like_qemu (c, 1, "raw");
  chain_close (c);
}

/* qemu asks the file about DATA runs only for metadata-preallocated
 * images (its refcount-versus-allocation test); a hole in an ordinary
 * image's data cluster stays data. Unallocated subclusters of allocated
 * clusters keep their host offset. */
static void
test_refine_and_subclusters (void **state)
{
  static const char *const images[] = {
    "tail.qcow2", "big.qcow2", "small.qcow2", "xl2.qcow2", "xl2top.qcow2",
    "pm1.qcow2", "pm2.qcow2", "pm64.qcow2", "pmv2.qcow2",
  };
  struct chain_policy p;
  struct chain *c;
  size_t i;

  sh ("qemu-img create -q -f qcow2 tail.qcow2 1M"
      " && qemu-io -c 'write -P 1 512k 4k' tail.qcow2 >/dev/null"
      " && qemu-img create -q -f qcow2 big.qcow2 4M"
      " && qemu-io -c 'write -P 2 0 2M' big.qcow2 >/dev/null"
      " && fallocate --punch-hole -o 327680 -l 65536 big.qcow2"
      " && qemu-img create -q -f qcow2 small.qcow2 4M"
      " && qemu-io -c 'write -P 3 0 64k' -c 'write -P 4 1M 128k' small.qcow2"
      " >/dev/null"
      " && fallocate --punch-hole -o 327680 -l 65536 small.qcow2"
      " && qemu-img create -q -f qcow2 -o extended_l2=on xl2.qcow2 1M"
      " && qemu-io -c 'write -P 5 66k 2k' -c 'write -P 6 70k 6k' xl2.qcow2"
      " >/dev/null"
      " && qemu-img create -q -f qcow2 -o extended_l2=on -b xl2.qcow2"
      " -F qcow2 xl2top.qcow2 2M"
      " && qemu-io -c 'write -P 7 1M 2k' -c 'write -P 8 64k 2k' xl2top.qcow2"
      " >/dev/null"
      " && for o in 1:pm1 2:pm2 64:pm64; do"
      " qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k"
      ",refcount_bits=${o%%:*} ${o#*:}.qcow2 1M || exit 1;"
      " qemu-io -c 'write -P 9 8k 2k' ${o#*:}.qcow2 >/dev/null || exit 1; done"
      " && qemu-img create -q -f qcow2 -o preallocation=metadata,compat=0.10"
      " pmv2.qcow2 1M && qemu-io -c 'write -P 9 0 6k' pmv2.qcow2 >/dev/null");
  policy_init (&p);
  for (i = 0; i < sizeof images / sizeof images[0]; i++) {
    c = open_ok (images[i], &p);
    assert_map_like_qemu (c, 0, "qcow2");
    assert_read_like_qemu (c, 0, "qcow2");
    chain_close (c);
  }
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown (f, enter_tmpdir, leave_tmpdir)
    T (test_backing_format_ext),
    T (test_format_missing),
    T (test_format_unsupported),
    T (test_loop_symlink),
    T (test_loop_two),
    T (test_depth_limit),
    T (test_confinement),
    T (test_missing_backing),
    T (test_stop_at_missing),
    T (test_bad_names),
    T (test_find),
    T (test_status_example),
    T (test_cursor),
    T (test_cursor_asks_once),
    T (test_read_example),
    T (test_short_middle),
    T (test_raw_and_prealloc),
    T (test_refine_and_subclusters),
#undef T
  };

  if (system ("qemu-img --version >/dev/null 2>&1") != 0
      || system ("qemu-io --version >/dev/null 2>&1") != 0) {
    fprintf (stderr, "qemu-img or qemu-io not found: skipping\n");
    return 77;
  }
  if (getcwd (topdir, sizeof topdir) == NULL)
    return 99;
  return cmocka_run_group_tests (tests, NULL, NULL);
}
