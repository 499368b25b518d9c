/* Format lookup by name and the qcow2 magic test. */
#include <config.h>

#include <string.h>

#include "format.h"

const struct format_ops *
format_by_name (const char *name)
{
  if (name == NULL)
    return NULL;
  if (strcmp (name, "qcow2") == 0)
    return &qcow2_format;
  if (strcmp (name, "raw") == 0)
    return &raw_format;
  return NULL;
}

int
format_is_qcow2 (struct io *io, bool *yes)
{
  unsigned char magic[4];
  int r = io_pread (io, magic, sizeof magic, 0);

  if (r < 0)
    return r;
  *yes = memcmp (magic, "QFI\xfb", 4) == 0;
  return 0;
}
