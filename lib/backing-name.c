/* Backing names for overlays rewritten by jobs: a name that still reaches the same file from the overlay's directory. */
#include <config.h>

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "backing-name.h"

/* Directory of path, canonical; NULL with errno set on failure. */
static char *
real_dir (const char *path)
{
  char *copy = strdup (path), *r = NULL;

  if (copy != NULL)
    r = realpath (dirname (copy), NULL);
  free (copy);
  return r;
}

/* The canonical directory of path joined with path's own last component:
 * a symlinked image keeps the name it was reached by. */
static char *
real_dir_and_base (const char *path)
{
  char *dir = real_dir (path), *copy = strdup (path), *out = NULL;

  if (dir != NULL && copy != NULL
      && asprintf (&out, "%s%s%s", dir, strcmp (dir, "/") ? "/" : "",
                   basename (copy)) < 0)
    out = NULL;
  free (dir);
  free (copy);
  return out;
}

char *
relative_path_to (const char *from_dir, const char *to)
{
  size_t i, common = 0, ups = 0, len;
  const char *rest;
  char *out, *p;

  /* The longest shared run of whole components: a '/' in both at the
   * same place, or the end of from_dir where `to` continues with '/'. */
  for (i = 0; from_dir[i] && from_dir[i] == to[i]; i++)
    if (from_dir[i] == '/')
      common = i;
  if (from_dir[i] == '\0' && to[i] == '/')
    common = i;
  for (i = common; from_dir[i]; i++)
    if (from_dir[i] == '/' && from_dir[i + 1] != '\0')
      ups++;
  rest = to + common + (to[common] == '/');
  len = ups * 3 + strlen (rest) + 1;
  if ((out = malloc (len)) == NULL)
    return NULL;
  for (p = out, i = 0; i < ups; i++, p += 3)
    memcpy (p, "../", 3);
  strcpy (p, rest);
  return out;
}

int
backing_name_from (const char *dir, struct chain *c, unsigned k,
                   char **out)
{
  const struct layer *l;
  char *wdir = NULL, *target = NULL;
  int r = 0;

  if (k == 0 || k >= c->n)
    return set_error (EINVAL, "layer %u has no overlay in the chain", k);
  l = &c->layers[k];
  *out = NULL;
  if (l->written_name[0] == '/')
    *out = strdup (l->written_name);
  else if ((wdir = real_dir (c->layers[k - 1].path)) == NULL)
    r = set_image_error (c->layers[k - 1].path, errno ? errno : ENOMEM,
                         "cannot resolve its directory: %m");
  else if (strcmp (dir, wdir) == 0)
    *out = strdup (l->written_name);
  else if ((target = real_dir_and_base (l->path)) == NULL)
    r = set_image_error (l->path, errno ? errno : ENOMEM,
                         "cannot resolve its path: %m");
  else
    *out = relative_path_to (dir, target);
  if (r == 0 && *out == NULL)
    r = set_error (ENOMEM, "out of memory");
  free (wdir);
  free (target);
  return r;
}

int
chain_backing_name (struct chain *c, unsigned over, unsigned k, char **out)
{
  char *odir;
  int r;

  if (over >= k || k >= c->n)
    return set_error (EINVAL, "layer %u is not below layer %u", k, over);
  if ((odir = real_dir (c->layers[over].path)) == NULL)
    return set_image_error (c->layers[over].path, errno ? errno : ENOMEM,
                            "cannot resolve its directory: %m");
  r = backing_name_from (odir, c, k, out);
  free (odir);
  return r;
}
