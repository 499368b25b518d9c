/* Unit tests for chain/resolve.c: backing name rules, path combination, confinement. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
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

#include "errors.h"
#include "chain.h"

static void
assert_refused (const char *name, int err, const char *msg_part)
{
  clear_error ();
  assert_int_equal (backing_name_check ("snap1.qcow2", name), -err);
  assert_non_null (qc_get_error ());
  assert_int_equal (qc_get_errno (), err);
  if (strstr (qc_get_error (), msg_part) == NULL)
    fail_msg ("message '%s' lacks '%s'", qc_get_error (), msg_part);
  assert_int_equal (strncmp (qc_get_error (), "snap1.qcow2: ", 13), 0);
}

static void
test_name_empty (void **state)
{
  assert_refused ("", EINVAL, "empty");
  assert_refused (NULL, EINVAL, "empty");
}

static void
test_name_json (void **state)
{
  assert_refused ("json:{\"file.filename\":\"/etc/passwd\"}", EINVAL,
                  "is a json: specification");
  /* Upper case is still a protocol prefix. */
  assert_refused ("JSON:{}", EINVAL, "is a protocol");
}

static void
test_name_protocols (void **state)
{
  clear_error ();
  assert_int_equal (backing_name_check ("snap1.qcow2", "nbd:x"), -EINVAL);
  assert_string_equal (qc_get_error (),
                       "snap1.qcow2: backing file name 'nbd:x' is a protocol, "
                       "not a local path");
  assert_refused ("nbd:host:10809", EINVAL, "is a protocol");
  assert_refused ("http://x", EINVAL, "is a protocol");
  assert_refused ("https://example.com/disk.img", EINVAL, "is a protocol");
  assert_refused ("file:foo", EINVAL, "is a protocol");
  assert_refused ("file:/abs/foo", EINVAL, "is a protocol");
  assert_refused ("a:b", EINVAL, "is a protocol");
  assert_refused (":", EINVAL, "is a protocol");
  assert_refused ("base:", EINVAL, "is a protocol");
}

static void
test_name_control (void **state)
{
  assert_refused ("a\tb", EINVAL, "control character 0x09");
  assert_refused ("a\nb", EINVAL, "control character 0x0a");
  assert_refused ("\x1b[31mred", EINVAL, "control character 0x1b");
  assert_refused ("del\x7f", EINVAL, "control character 0x7f");
  assert_refused ("\x01", EINVAL, "at byte 0");
}

static void
test_name_length (void **state)
{
  char *name = malloc (4098);

  assert_non_null (name);
  memset (name, 'a', 4097);
  name[4097] = '\0';
  assert_refused (name, ENAMETOOLONG, "longer than 4096");
  name[4096] = '\0';
  assert_int_equal (backing_name_check ("snap1.qcow2", name), 0);
  free (name);
}

static void
test_name_accepted (void **state)
{
  static const char *ok[] = {
    "base", "base.qcow2", "dir/base", "/abs/base", "../up/base",
    "./nbd:x", "dir/a:b", "/x:y", "sp ace", "\xc3\xa9t\xc3\xa9.qcow2", "~",
  };
  size_t i;

  for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    clear_error ();
    if (backing_name_check ("snap1.qcow2", ok[i]) != 0)
      fail_msg ("'%s' refused: %s", ok[i], qc_get_error ());
    assert_false (have_error ());
  }
}

static void
assert_resolves (const char *overlay, const char *name, const char *want)
{
  char *out = NULL;

  assert_int_equal (backing_resolve (overlay, name, &out), 0);
  assert_non_null (out);
  assert_string_equal (out, want);
  free (out);
}

static void
test_resolve (void **state)
{
  assert_resolves ("s1.qcow2", "base", "base");
  assert_resolves ("dir/s1.qcow2", "base", "dir/base");
  assert_resolves ("/a/b/s1", "../c", "/a/b/../c");
  assert_resolves ("/a/b/s1", "/x/y", "/x/y");
  assert_resolves ("dir/s1.qcow2", "/abs", "/abs");
  assert_resolves ("/s1", "base", "/base");
  assert_resolves ("dir/sub/s1", "x/y", "dir/sub/x/y");
  assert_resolves ("./s1", "base", "./base");
  assert_resolves ("dir//s1", "base", "dir//base");
  assert_resolves ("dir/s1", "./b", "dir/./b");
}

/* ---- confinement ---- */

struct tree {
  char root[64];
};

static void
path_in (char *buf, size_t n, const struct tree *t, const char *rel)
{
  int r = snprintf (buf, n, "%s/%s", t->root, rel);
  assert_true (r > 0 && (size_t) r < n);
}

static void
touch (const struct tree *t, const char *rel)
{
  char p[PATH_MAX];
  int fd;

  path_in (p, sizeof p, t, rel);
  fd = open (p, O_CREAT | O_WRONLY, 0644);
  assert_true (fd >= 0);
  close (fd);
}

static void
mkdir_in (const struct tree *t, const char *rel)
{
  char p[PATH_MAX];

  path_in (p, sizeof p, t, rel);
  assert_int_equal (mkdir (p, 0755), 0);
}

static void
symlink_in (const struct tree *t, const char *target, const char *rel)
{
  char p[PATH_MAX];

  path_in (p, sizeof p, t, rel);
  assert_int_equal (symlink (target, p), 0);
}

/* root/a/{f, in -> f, out -> ../b/g, dirlink -> ../b}, root/ab/h, root/b/g,
 * root/alias -> a */
static int
setup_tree (void **state)
{
  struct tree *t = calloc (1, sizeof *t);

  if (t == NULL)
    return -1;
  strcpy (t->root, "/tmp/test-resolve.XXXXXX");
  if (mkdtemp (t->root) == NULL)
    return -1;
  mkdir_in (t, "a");
  mkdir_in (t, "ab");
  mkdir_in (t, "b");
  touch (t, "a/f");
  touch (t, "ab/h");
  touch (t, "b/g");
  symlink_in (t, "f", "a/in");
  symlink_in (t, "../b/g", "a/out");
  symlink_in (t, "../b", "a/dirlink");
  symlink_in (t, "a", "alias");
  *state = t;
  return 0;
}

static int
teardown_tree (void **state)
{
  struct tree *t = *state;
  char cmd[PATH_MAX + 16];

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", t->root);
  if (system (cmd) != 0)
    return -1;
  free (t);
  return 0;
}

static int
confined (const struct tree *t, const char *rel, const char *dir1,
          const char *dir2)
{
  char p[PATH_MAX], d1[PATH_MAX], d2[PATH_MAX];
  char *dirs[2] = { d1, d2 };

  path_in (p, sizeof p, t, rel);
  path_in (d1, sizeof d1, t, dir1);
  if (dir2)
    path_in (d2, sizeof d2, t, dir2);
  clear_error ();
  return backing_confined ("top.qcow2", p, dirs, dir2 ? 2 : 1);
}

static void
test_confined_inside (void **state)
{
  struct tree *t = *state;

  assert_int_equal (confined (t, "a/f", "a", NULL), 0);
  assert_int_equal (confined (t, "a/in", "a", NULL), 0);
  assert_int_equal (confined (t, "b/../a/f", "a", NULL), 0);
  /* The allowed dir itself may be spelled through a symlink. */
  assert_int_equal (confined (t, "a/f", "alias", NULL), 0);
  assert_int_equal (confined (t, "alias/f", "a", NULL), 0);
  assert_int_equal (confined (t, "a/f", "a/", NULL), 0);
  assert_int_equal (confined (t, "b/g", "a", "b"), 0);
  assert_int_equal (confined (t, "a/f", ".", NULL), 0);
}

static void
test_confined_outside (void **state)
{
  struct tree *t = *state;

  assert_int_equal (confined (t, "b/g", "a", NULL), -EACCES);
  assert_int_equal (qc_get_errno (), EACCES);
  assert_non_null (strstr (qc_get_error (), "top.qcow2: "));
  assert_non_null (strstr (qc_get_error (), "outside the allowed"));
  assert_int_equal (confined (t, "a/../b/g", "a", NULL), -EACCES);
}

static void
test_confined_prefix_trick (void **state)
{
  struct tree *t = *state;

  /* root/ab shares the string prefix root/a but is not inside it. */
  assert_int_equal (confined (t, "ab/h", "a", NULL), -EACCES);
}

static void
test_confined_symlink_escape (void **state)
{
  struct tree *t = *state;

  assert_int_equal (confined (t, "a/out", "a", NULL), -EACCES);
  assert_int_equal (confined (t, "a/dirlink/g", "a", NULL), -EACCES);
  /* Inside once the target's directory is allowed too. */
  assert_int_equal (confined (t, "a/out", "a", "b"), 0);
}

static void
test_confined_missing (void **state)
{
  struct tree *t = *state;

  assert_int_equal (confined (t, "a/nothing", "a", NULL), -ENOENT);
  assert_non_null (strstr (qc_get_error (), "does not exist"));
  /* An allowed dir that does not exist allows nothing. */
  assert_int_equal (confined (t, "a/f", "nodir", NULL), -EACCES);
}

static void
test_confined_fd (void **state)
{
  struct tree *t = *state;
  char p[PATH_MAX], d[PATH_MAX];
  char *dirs[1] = { d };
  int fd;

  path_in (d, sizeof d, t, "a");
  path_in (p, sizeof p, t, "a/out");
  fd = open (p, O_RDONLY);
  assert_true (fd >= 0);
  clear_error ();
  assert_int_equal (backing_confined_fd ("top.qcow2", p, fd, dirs, 1),
                    -EACCES);
  close (fd);
  path_in (p, sizeof p, t, "a/in");
  fd = open (p, O_RDONLY);
  assert_true (fd >= 0);
  assert_int_equal (backing_confined_fd ("top.qcow2", p, fd, dirs, 1), 0);
  close (fd);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_name_empty),
    cmocka_unit_test (test_name_json),
    cmocka_unit_test (test_name_protocols),
    cmocka_unit_test (test_name_control),
    cmocka_unit_test (test_name_length),
    cmocka_unit_test (test_name_accepted),
    cmocka_unit_test (test_resolve),
    cmocka_unit_test_setup_teardown (test_confined_inside, setup_tree,
                                     teardown_tree),
    cmocka_unit_test_setup_teardown (test_confined_outside, setup_tree,
                                     teardown_tree),
    cmocka_unit_test_setup_teardown (test_confined_prefix_trick, setup_tree,
                                     teardown_tree),
    cmocka_unit_test_setup_teardown (test_confined_symlink_escape, setup_tree,
                                     teardown_tree),
    cmocka_unit_test_setup_teardown (test_confined_missing, setup_tree,
                                     teardown_tree),
    cmocka_unit_test_setup_teardown (test_confined_fd, setup_tree,
                                     teardown_tree),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
