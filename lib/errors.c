/* Thread-local last error: message and errno, the libnbd model. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qchain.h"
#include "errors.h"

#define MSG_MAX 1024

static __thread char last_msg[MSG_MAX];
static __thread int last_errno;
static __thread int has_msg;

static int
vrecord (const char *prefix, int errnum, const char *fmt, va_list ap)
{
  size_t n = 0;

  if (prefix)
    n = (size_t) snprintf (last_msg, sizeof last_msg, "%s: ", prefix);
  if (n >= sizeof last_msg)
    n = sizeof last_msg - 1;
  vsnprintf (last_msg + n, sizeof last_msg - n, fmt, ap);
  last_errno = errnum;
  has_msg = 1;
  return -errnum;
}

int
set_error (int errnum, const char *fmt, ...)
{
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vrecord (NULL, errnum, fmt, ap);
  va_end (ap);
  return r;
}

int
set_image_error (const char *name, int errnum, const char *fmt, ...)
{
  va_list ap;
  int r;

  va_start (ap, fmt);
  r = vrecord (name, errnum, fmt, ap);
  va_end (ap);
  return r;
}

int
have_error (void)
{
  return has_msg;
}

void
clear_error (void)
{
  has_msg = 0;
  last_errno = 0;
  last_msg[0] = '\0';
}

int
public_error (int r)
{
  int e = r < 0 ? -r : EIO;

  if (!has_msg)
    set_error (e, "%s", strerror (e));
  errno = last_errno ? last_errno : e;
  return -1;
}

const char *
qc_get_error (void)
{
  return has_msg ? last_msg : NULL;
}

int
qc_get_errno (void)
{
  return last_errno;
}
