/* Internal definitions behind the public handles of qchain.h. */
#ifndef QC_INTERNAL_H
#define QC_INTERNAL_H

#include <stdbool.h>

#include "qchain.h"
#include "chain.h"

struct qc_open_opts {
  char *format;
  bool probe;
  bool writable;
  bool no_backing;
  bool describe_only;
  bool force_share;
  unsigned max_depth;
  char **allowed_dirs;
  size_t n_allowed_dirs;
};

struct qc_image {
  struct chain *chain;
};

/* Turn opts (may be NULL) into a policy; the policy borrows opts' strings. */
void opts_to_policy (const struct qc_open_opts *opts,
                     struct chain_policy *policy);

/* qemu-img -o options into p; unknown keys are errors naming path. */
int parse_create_options (const char *path, const char *options,
                          struct create_params *p);

#endif
