/* qc_create: new qcow2 or raw images, with qemu-img's creation options. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "internal.h"

int
qc_parse_size (const char *s, uint64_t *out)
{
  static const char suffixes[] = "bkmgtpe";
  unsigned long long v;
  const char *p;
  char *end;

  if (s == NULL || *s < '0' || *s > '9')
    goto bad;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno)
    goto bad;
  if (*end) {
    unsigned shift;
    char c = (char) (*end | 0x20);          /* lower case */
    if (end[1] != '\0' && !(end[1] == 'i' && end[2] == 'B' && end[3] == '\0')
        && !((end[1] | 0x20) == 'b' && end[2] == '\0'))
      goto bad;
    p = strchr (suffixes, c);
    if (p == NULL || c == '\0')
      goto bad;
    shift = 10 * (unsigned) (p - suffixes);
    if (shift && v > (UINT64_MAX >> shift))
      goto bad;
    v <<= shift;
  }
  *out = v;
  return 0;
 bad:
  errno = EINVAL;
  return -1;
}

static int
parse_bool (const char *path, const char *key, const char *v, bool *out)
{
  if (strcmp (v, "on") == 0 || strcmp (v, "true") == 0)
    *out = true;
  else if (strcmp (v, "off") == 0 || strcmp (v, "false") == 0)
    *out = false;
  else
    return set_image_error (path, EINVAL, "option %s: '%s' is not on or off",
                            key, v);
  return 0;
}

/* One key=value of -o. */
static int
parse_option (const char *path, char *kv, struct create_params *p)
{
  char *v = strchr (kv, '=');
  uint64_t n;

  if (v == NULL)
    return set_image_error (path, EINVAL, "option '%s' has no value", kv);
  *v++ = '\0';
  if (strcmp (kv, "compat") == 0) {
    if (strcmp (v, "0.10") == 0 || strcmp (v, "v2") == 0)
      p->version = 2;
    else if (strcmp (v, "1.1") == 0 || strcmp (v, "v3") == 0)
      p->version = 3;
    else
      return set_image_error (path, EINVAL, "compat must be 0.10 or 1.1, "
                              "not '%s'", v);
  }
  else if (strcmp (kv, "cluster_size") == 0 || strcmp (kv, "refcount_bits") == 0) {
    if (qc_parse_size (v, &n) < 0 || n > UINT32_MAX)
      return set_image_error (path, EINVAL, "%s: '%s' is not a size", kv, v);
    if (kv[0] == 'c')
      p->cluster_size = (uint32_t) n;
    else
      p->refcount_bits = (uint32_t) n;
  }
  else if (strcmp (kv, "extended_l2") == 0)
    return parse_bool (path, kv, v, &p->extended_l2);
  else if (strcmp (kv, "lazy_refcounts") == 0)
    return parse_bool (path, kv, v, &p->lazy_refcounts);
  else if (strcmp (kv, "compression_type") == 0) {
    if (strcmp (v, "zlib") != 0 && strcmp (v, "zstd") != 0)
      return set_image_error (path, EINVAL, "compression_type must be zlib "
                              "or zstd, not '%s'", v);
    p->zstd = v[1] == 's';
  }
  else if (strcmp (kv, "preallocation") == 0) {
    if (strcmp (v, "off") != 0)
      return set_image_error (path, ENOTSUP, "preallocation=%s is not "
                              "supported (only off)", v);
  }
  else
    return set_image_error (path, EINVAL, "unknown creation option '%s'", kv);
  return 0;
}

int
parse_create_options (const char *path, const char *options,
                      struct create_params *p)
{
  char *copy, *save = NULL, *kv;
  int r = 0;

  if (options == NULL || *options == '\0')
    return 0;
  copy = strdup (options);
  if (copy == NULL)
    return set_error (ENOMEM, "out of memory");
  for (kv = strtok_r (copy, ",", &save); kv && r == 0;
       kv = strtok_r (NULL, ",", &save))
    r = parse_option (path, kv, p);
  free (copy);
  return r;
}

/* The backing file's format and size: from the caller, else from its own
 * header when it is qcow2; a backing file is never probed as raw. */
static int
inspect_backing (const char *path, const char *backing, const char **format,
                 uint64_t *size)
{
  struct chain_policy pol = { .no_backing = true, .describe_only = true };
  char *resolved = NULL;
  struct chain *c = NULL;
  struct io *io = NULL;
  bool qcow2;
  int r;

  r = backing_name_check (path, backing);
  if (r == 0)
    r = backing_resolve (path, backing, &resolved);
  if (r < 0)
    return r;
  if (*format == NULL) {
    r = io_open_file (resolved, 0, &io);
    if (r == 0)
      r = format_is_qcow2 (io, &qcow2);
    io_close (io);
    if (r == 0 && !qcow2)
      r = set_image_error (path, EINVAL, "backing file '%s' is not qcow2; "
                           "give its format (-F raw) to use it", backing);
    if (r < 0)
      goto out;
    *format = "qcow2";
  }
  pol.format = *format;
  r = chain_open (resolved, &pol, &c);
  if (r == 0)
    *size = c->layers[0].info.virtual_size;
 out:
  chain_close (c);
  free (resolved);
  return r;
}

int
qc_create (const char *path, const char *format, uint64_t size,
           const char *backing, const char *backing_format,
           const char *options)
{
  struct create_params p = { .size = size };
  const struct format_ops *ops;
  uint64_t backing_size = 0;
  struct io *io = NULL;
  int r;

  clear_error ();
  if (path == NULL || *path == '\0')
    return public_error (set_error (EINVAL, "no image name given"));
  ops = format_by_name (format ? format : "qcow2");
  if (ops == NULL)
    return public_error (set_image_error (path, EINVAL, "unknown format '%s'",
                                          format));
  if (backing_format && format_by_name (backing_format) == NULL)
    return public_error (set_image_error (path, EINVAL, "unknown backing "
                                          "format '%s'", backing_format));
  if (ops->create == NULL)
    return public_error (set_image_error (path, ENOTSUP, "creating %s images "
                                          "is not supported", ops->name));
  if (backing && *backing == '\0')
    backing = NULL;
  r = parse_create_options (path, options, &p);
  if (r == 0 && backing)
    r = inspect_backing (path, backing, &backing_format, &backing_size);
  if (r < 0)
    return public_error (r);
  if (p.size == 0 && backing == NULL)
    return public_error (set_image_error (path, EINVAL, "no size given"));
  if (p.size == 0)
    p.size = backing_size;
  p.backing = backing;
  p.backing_format = backing_format;

  r = io_open_file (path, IO_CREATE, &io);
  if (r == -EEXIST)
    return public_error (set_image_error (path, EEXIST, "already exists; "
                                          "qchain never overwrites an image"));
  if (r < 0)
    return public_error (r);
  r = ops->create (io, &p);
  if (r == 0)
    r = io->ops->flush (io);
  io_close (io);
  if (r < 0) {
    unlink (path);
    return public_error (r);
  }
  return 0;
}
