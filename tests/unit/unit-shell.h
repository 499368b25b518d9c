/* Unit-test helpers for tests that drive qemu-img: a fresh temporary directory per test, and shell commands that must succeed. */
#ifndef QC_UNIT_SHELL_H
#define QC_UNIT_SHELL_H

/* Include after <cmocka.h> (and its prerequisites), <limits.h>,
 * <stdarg.h>, <stdio.h>, <stdlib.h>, <string.h> and <unistd.h>. */

static char topdir[PATH_MAX];   /* where the tests started: main sets it */

/* Each test runs in a fresh temporary directory, so relative names are
 * relative to it. */
static int
enter_tmpdir (void **state)
{
  char *dir = strdup ("/tmp/qchain-unit.XXXXXX");

  if (dir == NULL || mkdtemp (dir) == NULL || chdir (dir) != 0)
    return -1;
  *state = dir;
  return 0;
}

static int
leave_tmpdir (void **state)
{
  char *dir = *state;
  char cmd[PATH_MAX + 16];

  if (chdir (topdir) != 0)
    return -1;
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    return -1;
  free (dir);
  return 0;
}

/* Run a shell command; the test fails if it does. */
static void __attribute__ ((format (printf, 1, 2), unused))
sh (const char *fmt, ...)
{
  char cmd[8192];
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  assert_true (r > 0 && (size_t) r < sizeof cmd);
  if (system (cmd) != 0)
    fail_msg ("command failed: %s", cmd);
}

#endif
