/* Chains: resolving backing names under the chain policy, opening a chain, its guest view. */
#ifndef QC_CHAIN_H
#define QC_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qchain.h"
#include "io.h"
#include "format.h"

#define CHAIN_DEFAULT_MAX_DEPTH 256
/* Metadata cache of all backing layers together (each keeps a minimum). */
#define CHAIN_BACKING_CACHE_BYTES (8u << 20)

struct chain_policy {
  const char *format;        /* top image's format; NULL = qcow2 magic or raw */
  bool probe;                /* allow probing backing files without a format */
  bool writable;             /* open the top layer read-write */
  bool no_backing;           /* open only the top layer */
  bool describe_only;        /* FMT_OPEN_DESCRIBE: describe, no guest data */
  bool repair;               /* FMT_OPEN_REPAIR on the (writable) top layer */
  bool lock;                 /* QEMU-compatible locks: top IO_LOCK_WRITE
                                when writable, else IO_LOCK_READ; backing
                                layers IO_LOCK_READ */
  bool stop_at_missing;      /* a backing file that does not exist ends the
                                chain (chain.cut) instead of failing it */
  unsigned max_depth;        /* layers at most, top included; 0 = default */
  char **allowed_dirs;       /* NULL or real paths of directories */
  size_t n_allowed_dirs;
};

struct layer {
  const struct format_ops *ops;
  void *st;
  struct io *io;
  char *path;                /* path opened (top: as given; others: resolved) */
  char *written_name;        /* backing name as the overlay above wrote it */
  char *backing_path;        /* this layer's backing name resolved, or NULL */
  dev_t dev;
  ino_t ino;
  struct qc_info info;       /* described at open */
};

struct chain {
  struct layer *layers;      /* [0] is the top (active) image */
  unsigned n;
  bool locked;               /* opened with policy.lock */
  bool cut;                  /* stop_at_missing ended it: the last layer's
                                backing file does not exist */
};

/* ---- resolve.c: backing names and the chain policy ---- */

/* Refuse names that are not plain local paths: empty, json:, protocol
 * prefixes ("nbd:", "http:" ...: a ':' before any '/'), control characters. */
int backing_name_check (const char *overlay, const char *name);
/* Resolve name against the directory of overlay, as qemu does:
 * absolute names stay, relative ones get overlay's directory prepended. */
int backing_resolve (const char *overlay, const char *name, char **out);
/* 0 when path's real location is inside one of dirs (real paths);
 * -EACCES with a message naming overlay otherwise. */
int backing_confined (const char *overlay, const char *path,
                      char *const *dirs, size_t n);
/* The same check on an opened file (through /proc/self/fd), so that a path
 * swapped between the check and the open cannot escape; path names it in
 * messages. 0 when /proc is unavailable (backing_confined has run). */
int backing_confined_fd (const char *overlay, const char *path, int fd,
                         char *const *dirs, size_t n);

/* ---- chain.c ---- */

int chain_open (const char *path, const struct chain_policy *policy,
                struct chain **out);
void chain_close (struct chain *c);
/* Reopen layer `depth` read-write, for a job that writes it: the same file
 * (checked by inode), its format state replaced by a writable one. On
 * error the layer is closed and the chain only fit for chain_close. */
int chain_reopen_writable (struct chain *c, unsigned depth);
/* Depth of the member named by "@N", a name as written, or any path to the
 * same file; -ENOENT with a message if none. */
int chain_find (struct chain *c, const char *name);

/* ---- status.c: the guest view ---- */

/* The extent at off of the guest view of layer `depth` (through its
 * backing), qemu-img map's semantics; e->depth is the index in c->layers
 * of the layer that decided. off < size of that layer, e->length <= len. */
int chain_block_status (struct chain *c, unsigned depth, uint64_t off,
                        uint64_t len, struct qc_extent *e);
/* The same over layers depth..stop-1 only: a range none of them allocates
 * comes back with present = 0 and e->depth = stop (unless it reads as zero
 * because nothing is below: then as chain_block_status). */
int chain_block_status_above (struct chain *c, unsigned depth, unsigned stop,
                              uint64_t off, uint64_t len, struct qc_extent *e);
/* Each layer's last answer, for walks in offset order: a deep chain is
 * otherwise asked again, layer by layer, about the same long unallocated
 * runs from every extent's start. Valid only while none of the layers it
 * has seen is written. */
struct chain_cursor {
  unsigned n;
  struct chain_cursor_layer {
    uint64_t off;                    /* le answers [off, off + le.len) */
    struct layer_extent le;
  } *l;
};
int chain_cursor_init (struct chain_cursor *cur, const struct chain *c);
void chain_cursor_free (struct chain_cursor *cur);
/* Layer d's own status at off (below its size), at most len bytes, checked
 * and answered from cur where it can (cur may be NULL). */
int chain_layer_status (struct chain *c, struct chain_cursor *cur, unsigned d,
                        uint64_t off, uint64_t len, struct layer_extent *le);
/* chain_block_status_above answered from cur where it can (cur may be
 * NULL). */
int chain_block_status_cur (struct chain *c, struct chain_cursor *cur,
                            unsigned depth, unsigned stop, uint64_t off,
                            uint64_t len, struct qc_extent *e);
/* A backing_reader (format.h) over the view below layer `depth`, for the
 * layer's copy-on-write; b holds its state and must outlive br's use. */
struct chain_below {
  struct chain *chain;
  unsigned depth;
};
void chain_backing_reader (struct chain *c, unsigned depth,
                           struct chain_below *b, struct backing_reader *br);

/* Read the guest view of layer `depth`; bytes past its end read as zero. */
int chain_read (struct chain *c, unsigned depth, void *buf, size_t n,
                uint64_t off);

#endif
