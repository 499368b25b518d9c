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
  unsigned io_flags;   /* QC_JOB_IO_FLAGS */
};

/* Start the job. It takes c, nc, name and format (freed on any error, and
 * p's pointers cleared), and plans from each layer's metadata at once. */
int retarget_start (struct retarget_params *p, uint64_t bandwidth,
                    struct qc_job **out);

/* Open IMAGE for a job that rewrites its backing pointer: writable, its
 * chain (unless no_backing) under opts' policy; raw images refused. */
int retarget_open_image (const char *image, const struct qc_open_opts *opts,
                         bool no_backing, struct chain **out);

/* ---- between retarget.c and retarget-plan.c ---- */

enum pkind {
  P_COPY,              /* write the old view (pull) */
  P_CMP,               /* write the old view where it differs from the
                          new one (rebase) */
  P_ZERO,              /* old view reads zero, the one below might not */
};

/* Where a planned range's old view is read from. */
enum psrc {
  S_VIEW,              /* IMAGE's backing view, through the chain */
  S_ZERO,              /* reads as zeroes */
  S_FILE,              /* layer `layer`'s file at host offset `host` */
  S_LAYER,             /* layer `layer` alone (compressed clusters) */
};

struct prange {
  uint64_t off, len;
  uint64_t host;       /* S_FILE: host offset of off */
  unsigned layer;      /* S_FILE, S_LAYER */
  enum pkind kind;
  enum psrc src;
};

struct planner;

struct retarget {
  enum rt_mode mode;
  struct chain *c, *nc;
  unsigned keep;
  char *name, *format;
  uint64_t size;       /* IMAGE's virtual size */
  uint32_t gran;       /* IMAGE's allocation unit */
  unsigned io_flags;
  bool direct_writes;  /* IMAGE's aligned writes bypass the page cache */
  struct prange *plan; /* the current batch */
  size_t nplan, cap;
  struct planner *pl;  /* where planning goes on (retarget-plan.c) */
  uint64_t planned_end;    /* end of the last range ever planned */
  uint64_t planned_bytes;  /* bytes planned to be read, all batches */
};

/* Ranges in a batch: the plan is made a batch at a time, so its memory
 * does not grow with the image. */
#define RT_PLAN_BATCH 65536u
/* Unit tests set this (not exported) to make batches small; 0: the above. */
extern size_t retarget_plan_batch;

/* Plan the first batch in rt->plan: the ranges IMAGE leaves to its
 * backing where the view it will have differs, or may differ, from the
 * one it has, in offset order. */
int retarget_plan_start (struct retarget *rt);
/* Replace rt->plan by the next batch (empty when all is planned). */
int retarget_plan_more (struct retarget *rt);
/* Whether every batch has been planned. */
bool retarget_plan_done (const struct retarget *rt);
void retarget_plan_free (struct retarget *rt);

#endif
