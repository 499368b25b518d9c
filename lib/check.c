/* qc_check: consistency check and repair of one image, exit codes as qemu-img check. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "errors.h"
#include "internal.h"

int
qc_check (const char *path, const char *format, unsigned flags,
          struct qc_check_result *result, qc_check_report_cb report,
          void *opaque)
{
  struct chain_policy pol = { .format = format, .no_backing = true };
  struct qc_check_result res;
  struct chain *c = NULL;
  struct layer *l;
  int r;

  clear_error ();
  memset (&res, 0, sizeof res);
  res.struct_size = sizeof res;
  if (flags & ~(QC_CHECK_REPAIR_LEAKS | QC_CHECK_REPAIR_ALL))
    return public_error (set_image_error (path, EINVAL, "unknown check flags"));
  if (flags) {
    pol.writable = true;
    pol.repair = true;
    pol.lock = true;
  }
  r = chain_open (path, &pol, &c);
  if (r < 0)
    return public_error (r);
  l = &c->layers[0];
  if (l->ops->check == NULL)
    r = set_image_error (path, ENOTSUP, "checking %s images is not supported",
                         l->ops->name);
  else
    r = l->ops->check (l->st, flags, &res, report, opaque);
  if (r == 0 && flags)
    r = l->ops->flush (l->st);
  chain_close (c);
  if (r < 0)
    return public_error (r);
  if (result) {
    uint32_t size = result->struct_size;
    memcpy ((char *) result + sizeof size, (char *) &res + sizeof size,
            (size < sizeof res ? size : sizeof res) - sizeof size);
  }
  if (res.check_errors)
    return 1;
  if (res.corruptions)
    return 2;
  return res.leaks ? 3 : 0;
}
