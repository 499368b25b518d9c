/* Unit tests for the thread-local last error behind qc_get_error/qc_get_errno. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "qchain.h"
#include "errors.h"

static void
image_error_names_image (void **state)
{
  assert_int_equal (set_image_error ("a.qcow2", EINVAL, "bad %s", "thing"),
                    -EINVAL);
  assert_string_equal (qc_get_error (), "a.qcow2: bad thing");
  assert_int_equal (qc_get_errno (), EINVAL);
}

static void
public_error_sets_errno (void **state)
{
  clear_error ();
  set_error (ENOENT, "gone");
  errno = 0;
  assert_int_equal (public_error (-ENOENT), -1);
  assert_int_equal (errno, ENOENT);
}

static void
long_message_truncated_safely (void **state)
{
  char big[4000];

  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  set_image_error (big, EIO, "%s", big);
  assert_true (strlen (qc_get_error ()) < 1024);
}

static void *
other_thread (void *arg)
{
  /* A fresh thread sees no error, and its own does not leak back. */
  *(int *) arg = qc_get_error () == NULL;
  set_error (EPERM, "thread");
  return NULL;
}

static void
errors_are_per_thread (void **state)
{
  pthread_t t;
  int clean = 0;

  set_error (EINVAL, "main");
  assert_int_equal (pthread_create (&t, NULL, other_thread, &clean), 0);
  pthread_join (t, NULL);
  assert_true (clean);
  assert_string_equal (qc_get_error (), "main");
  assert_int_equal (qc_get_errno (), EINVAL);
}

static void
open_missing_file_fails_with_message (void **state)
{
  struct qc_image *img = qc_open ("/nonexistent/dir/x.qcow2", NULL);

  assert_null (img);
  assert_int_equal (errno, ENOENT);
  assert_non_null (strstr (qc_get_error (), "/nonexistent/dir/x.qcow2"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (image_error_names_image),
    cmocka_unit_test (public_error_sets_errno),
    cmocka_unit_test (long_message_truncated_safely),
    cmocka_unit_test (errors_are_per_thread),
    cmocka_unit_test (open_missing_file_fails_with_message),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
