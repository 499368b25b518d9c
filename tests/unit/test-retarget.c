/* Unit tests for pull and rebase planned in small batches: the same image as with one batch, and as qemu-img's. */
#include <config.h>

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "qchain.h"
#include "retarget.h"

#include "unit-shell.h"

/* The batch size is global: back to the default after each test. */
static int
leave (void **state)
{
  retarget_plan_batch = 0;
  return leave_tmpdir (state);
}

/* t/: base <- s1 <- s2 <- top, 4 KiB clusters, 2 MiB; each layer writes
 * 4 KiB pieces at scattered offsets (some zero writes and discards), so
 * that a pull or rebase plans a few hundred ranges. Also other.qcow2, an
 * unrelated image, and t.raw, top's guest view. */
static void
make_chain (void)
{
  static const char *names[] = { "base", "s1", "s2", "top" };
  char cmds[6000];
  size_t n;
  int l, i;

  sh ("mkdir t && qemu-img create -q -f qcow2 -o cluster_size=4096 "
      "t/base.qcow2 2M && qemu-img create -q -f qcow2 -o cluster_size=4096 "
      "t/other.qcow2 2M");
  for (l = 1; l < 4; l++)
    sh ("qemu-img create -q -f qcow2 -o cluster_size=4096 -b %s.qcow2 "
        "-F qcow2 t/%s.qcow2 2M", names[l - 1], names[l]);
  for (l = 0; l < 5; l++) {
    n = 0;
    for (i = 0; i < 90; i++) {
      unsigned blk = (unsigned) ((i * 37 + l * 101) % 512);
      const char *op = i % 15 == 7 ? "write -z" : i % 15 == 11 && l > 0
        ? "discard" : "write -P";
      int k;
      if (strcmp (op, "write -P") == 0)
        k = snprintf (cmds + n, sizeof cmds - n, " -c '%s %d %u 4k'", op,
                      (l * 50 + i) % 250 + 1, blk * 4096);
      else
        k = snprintf (cmds + n, sizeof cmds - n, " -c '%s %u 4k'", op,
                      blk * 4096);
      assert_true (k > 0 && (size_t) k < sizeof cmds - n);
      n += (size_t) k;
    }
    sh ("qemu-io -f qcow2%s t/%s.qcow2 >/dev/null", cmds,
        l < 4 ? names[l] : "other");
  }
  sh ("qemu-img convert -O raw t/top.qcow2 t.raw");
}

/* What job `what` did to w/top.qcow2 must equal what qemu-img CMD did to
 * q/top.qcow2: the same view (t.raw), clean, and IMAGE holding the same
 * ranges as with one batch (b/). */
static void
run_batched (const char *what, struct qc_job *(*start) (const char *),
             const char *qemu_cmd)
{
  static const size_t batches[] = { 1, 2, 3, 7, 64, 0 };
  struct qc_job *j;
  size_t i;

  sh ("rm -rf q && cp -a t q && cd q && %s top.qcow2", qemu_cmd);
  for (i = 0; i < sizeof batches / sizeof *batches; i++) {
    struct qc_job_info info = { .struct_size = sizeof info };
    sh ("rm -rf w && cp -a t w");
    retarget_plan_batch = batches[i];
    j = start ("w/top.qcow2");
    if (j == NULL)
      fail_msg ("%s, batch %zu: %s", what, batches[i], qc_get_error ());
    if (qc_job_run (j, NULL, NULL) != 0)
      fail_msg ("%s, batch %zu: %s", what, batches[i], qc_get_error ());
    assert_int_equal (qc_job_info (j, &info), 0);
    assert_true (info.cur == info.end);
    qc_job_free (j);
    sh ("qemu-img compare -q w/top.qcow2 t.raw");
    sh ("qemu-img compare -q w/top.qcow2 q/top.qcow2");
    sh ("qemu-img check -q w/top.qcow2");
    sh ("qemu-img map --output=json w/top.qcow2 > map.%zu", i);
    if (batches[i] == 0)
      sh ("for f in map.*; do cmp $f map.%zu; done", i);
  }
}

static struct qc_job *
pull_all (const char *img)
{
  return qc_pull_start (img, NULL, 0, 0, NULL);
}

static struct qc_job *
pull_to_base (const char *img)
{
  return qc_pull_start (img, "base.qcow2", 0, 0, NULL);
}

static struct qc_job *
rebase_base (const char *img)
{
  return qc_rebase_start (img, "base.qcow2", "qcow2", 0, 0, NULL);
}

static struct qc_job *
rebase_other (const char *img)
{
  return qc_rebase_start (img, "other.qcow2", "qcow2", 0, 0, NULL);
}

static struct qc_job *
rebase_none (const char *img)
{
  return qc_rebase_start (img, "", NULL, 0, 0, NULL);
}

static void
test_pull_batches (void **state)
{
  (void) state;
  make_chain ();
  run_batched ("pull", pull_all, "qemu-img rebase -q -b ''");
  run_batched ("pull --base", pull_to_base,
               "qemu-img rebase -q -b base.qcow2 -F qcow2");
}

static void
test_rebase_batches (void **state)
{
  (void) state;
  make_chain ();
  run_batched ("rebase onto base", rebase_base,
               "qemu-img rebase -q -b base.qcow2 -F qcow2");
  run_batched ("rebase onto other", rebase_other,
               "qemu-img rebase -q -b other.qcow2 -F qcow2");
  run_batched ("rebase onto nothing", rebase_none, "qemu-img rebase -q -b ''");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_pull_batches, enter_tmpdir, leave),
    cmocka_unit_test_setup_teardown (test_rebase_batches, enter_tmpdir,
                                     leave),
  };

  if (getcwd (topdir, sizeof topdir) == NULL)
    return 1;
  return cmocka_run_group_tests (tests, NULL, NULL);
}
