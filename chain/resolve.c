/* Backing names under the chain policy: which names are accepted, how they resolve, confinement. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "errors.h"
#include "chain.h"

/* Names longer than this are refused: qemu's own limit on a backing file
 * name in the header is 1023 bytes, so anything near this is hostile. */
#define BACKING_NAME_MAX 4096

int
backing_name_check (const char *overlay, const char *name)
{
  size_t len, i;

  if (name == NULL || name[0] == '\0')
    return set_image_error (overlay, EINVAL, "backing file name is empty");
  len = strnlen (name, BACKING_NAME_MAX + 1);
  if (len > BACKING_NAME_MAX)
    return set_image_error (overlay, ENAMETOOLONG,
                            "backing file name is longer than %d bytes",
                            BACKING_NAME_MAX);
  /* Checked before quoting the name anywhere: it goes to terminals. */
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char) name[i];
    if (ch < 0x20 || ch == 0x7f)
      return set_image_error (overlay, EINVAL,
                              "backing file name contains control character "
                              "0x%02x at byte %zu", ch, i);
  }
  if (strncmp (name, "json:", 5) == 0)
    return set_image_error (overlay, EINVAL,
                            "backing file name '%s' is a json: specification, "
                            "not a local path", name);
  /* qemu's test for a protocol prefix: a ':' before any '/'. Every
   * protocol is refused, file: included, so the name means one thing. */
  if (name[strcspn (name, ":/")] == ':')
    return set_image_error (overlay, EINVAL,
                            "backing file name '%s' is a protocol, "
                            "not a local path", name);
  return 0;
}

int
backing_resolve (const char *overlay, const char *name, char **out)
{
  const char *slash;
  size_t dirlen, namelen, total;
  char *s;

  slash = name[0] == '/' ? NULL : strrchr (overlay, '/');
  dirlen = slash ? (size_t) (slash - overlay) + 1 : 0;
  namelen = strlen (name);
  if (ADD_OVERFLOW (dirlen, namelen, &total)
      || ADD_OVERFLOW (total, (size_t) 1, &total))
    return set_image_error (overlay, ENAMETOOLONG, "backing path too long");
  s = malloc (total);
  if (s == NULL)
    return set_image_error (overlay, ENOMEM, "out of memory");
  /* Plain concatenation, no canonicalisation: qemu shows the combined
   * string, and ".." must apply after symlinks, as the kernel does. */
  memcpy (s, overlay, dirlen);
  memcpy (s + dirlen, name, namelen + 1);
  *out = s;
  return 0;
}

/* Component-wise: /a/bc is not inside /a/b. */
static bool
path_inside (const char *real, const char *dir)
{
  size_t n = strlen (dir);

  while (n > 1 && dir[n - 1] == '/')
    n--;
  if (n == 1 && dir[0] == '/')
    return real[0] == '/';
  return strncmp (real, dir, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

static bool
real_inside_any (const char *real, char *const *dirs, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    CLEANUP_FREE char *rdir = realpath (dirs[i], NULL);
    /* An allowed dir that does not exist allows nothing. */
    if (rdir != NULL && path_inside (real, rdir))
      return true;
  }
  return false;
}

int
backing_confined (const char *overlay, const char *path,
                  char *const *dirs, size_t n)
{
  CLEANUP_FREE char *real = realpath (path, NULL);

  if (real == NULL) {
    int e = errno;
    if (e == ENOENT)
      return set_image_error (overlay, e, "backing file '%s' does not exist",
                              path);
    return set_image_error (overlay, e, "backing file '%s': %s", path,
                            strerror (e));
  }
  if (!real_inside_any (real, dirs, n))
    return set_image_error (overlay, EACCES,
                            "backing file '%s' (%s) is outside the allowed "
                            "directories", path, real);
  return 0;
}

int
backing_confined_fd (const char *overlay, const char *path, int fd,
                     char *const *dirs, size_t n)
{
  char link[64];
  CLEANUP_FREE char *real = NULL;

  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  real = realpath (link, NULL);
  if (real == NULL || real[0] != '/')
    return 0;
  if (!real_inside_any (real, dirs, n))
    return set_image_error (overlay, EACCES,
                            "backing file '%s' (%s) is outside the allowed "
                            "directories", path, real);
  return 0;
}
