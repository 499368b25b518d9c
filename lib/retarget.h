/* The job behind pull and rebase: fill an image with what its view needs, then switch its backing file. */
#ifndef QC_RETARGET_H
#define QC_RETARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "job.h"

enum rt_mode {
  RT_NAME_ONLY,        /* rewrite the header only (unsafe rebase) */
  RT_PULL,             /* copy what the layers above `keep` hold */
  RT_REBASE_KEEP,      /* new backing is layer `keep` of the old chain */
  RT_REBASE_OTHER,     /* new backing is `nc` (NULL: none) */
};

struct retarget_params {
  enum qc_job_type type;
  enum rt_mode mode;
  struct chain *c;     /* IMAGE's chain, its top opened writable */
  unsigned keep;       /* RT_PULL, RT_REBASE_KEEP: first layer that stays
                          below IMAGE (c->n: none stays) */
  struct chain *nc;    /* RT_REBASE_OTHER: the new backing's chain or NULL */
  char *name;          /* what IMAGE names at the end; NULL: nothing */
  char *format;        /* the new backing's format; NULL with name NULL */
};

/* Start the job. It takes c, nc, name and format (freed on any error, and
 * p's pointers cleared), and plans from each layer's metadata at once. */
int retarget_start (struct retarget_params *p, uint64_t bandwidth,
                    struct qc_job **out);

/* Open IMAGE for a job that rewrites its backing pointer: writable, its
 * chain (unless no_backing) under opts' policy; raw images refused. */
int retarget_open_image (const char *image, const struct qc_open_opts *opts,
                         bool no_backing, struct chain **out);

#endif
