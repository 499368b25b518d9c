/* qc_version: the library's version string. */
#include <config.h>

#include "qchain.h"

const char *
qc_version (void)
{
  return PACKAGE_VERSION;
}
