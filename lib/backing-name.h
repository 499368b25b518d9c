/* Backing names a job records in an overlay: names that resolve the same from the overlay's directory. */
#ifndef QC_BACKING_NAME_H
#define QC_BACKING_NAME_H

#include "chain.h"

/* The name layer `over` of c should record to have layer k (k > over) as
 * its backing file: k's name as its own overlay wrote it when that is
 * absolute or written from over's directory, else a path to k relative to
 * over's directory. *out is malloc'd. 0 or -errno. */
int chain_backing_name (struct chain *c, unsigned over, unsigned k,
                        char **out);

/* The same for a file in the directory dir (absolute, canonical), which
 * need not be in the chain: a shallow copy's new DEST. */
int backing_name_from (const char *dir, struct chain *c, unsigned k,
                       char **out);

/* A path to the file `to` relative to the directory `from_dir`; both
 * absolute and canonical (no ".", "..", symlinks or double slashes). */
char *relative_path_to (const char *from_dir, const char *to);

#endif
