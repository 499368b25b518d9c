/* qc_pull_start: libvirt's block pull, offline: an image takes in what the layers above a base hold, then names the base. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "backing-name.h"
#include "internal.h"
#include "retarget.h"

/* B by name, path or "@N": strictly below IMAGE. It stays, under the
 * name IMAGE will record for it, with its format. */
static int
pull_base (const char *base, struct retarget_params *p)
{
  struct chain *c = p->c;
  int k, r;

  if ((k = chain_find (c, base)) < 0)
    return k;
  if (k == 0)
    return set_image_error (base, EINVAL, "is the image itself: the base "
                            "must be below %s in its chain", c->layers[0].path);
  p->keep = (unsigned) k;
  if ((r = chain_backing_name (c, 0, p->keep, &p->name)) < 0)
    return r;
  if ((p->format = strdup (c->layers[k].ops->name)) == NULL)
    return set_error (ENOMEM, "out of memory");
  return 0;
}

struct qc_job *
qc_pull_start (const char *image, const char *base, uint64_t bandwidth,
               unsigned flags, const struct qc_open_opts *opts)
{
  struct retarget_params p = { .type = QC_JOB_PULL, .mode = RT_PULL,
                               .io_flags = flags & QC_JOB_IO_FLAGS };
  struct qc_job *j = NULL;
  int r;

  clear_error ();
  if (image == NULL || *image == '\0')
    r = set_error (EINVAL, "pull needs an image");
  else if (flags & ~QC_JOB_IO_FLAGS)
    r = set_error (EINVAL, "unknown pull flags 0x%x", flags);
  else if ((r = job_check_io_flags (flags)) < 0)
    ;
  else if ((r = retarget_open_image (image, opts, false, &p.c)) == 0) {
    p.keep = p.c->n;
    if (base != NULL && *base != '\0')
      r = pull_base (base, &p);
    if (r == 0)
      r = retarget_start (&p, bandwidth, &j);
  }
  if (r < 0) {
    chain_close (p.c);
    free (p.name);
    free (p.format);
    public_error (r);
    return NULL;
  }
  return j;
}
