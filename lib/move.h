/* The copy core every job runs on: ranges of a chain's layers planned from their metadata, moved in guest order into a writer through the I/O engine. */
#ifndef QC_MOVE_H
#define QC_MOVE_H

#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "format.h"
#include "job.h"

/*
 * What moves: the ranges that layers from..stop-1 of src allocate, read
 * from the layer that decides each one (straight from its file at the host
 * offset when it has one, else through the chain's view of that layer:
 * compressed clusters), in at most 2 MiB requests. Planning is done ahead
 * in bounded batches as the move goes, so memory does not grow with the
 * image.
 *
 * Into: DEST's format state, written in guest order so a qcow2 DEST is laid
 * out sequentially. Without `under`, DEST reads as zeroes wherever nothing
 * is written (a new image, or one checked empty): each window is assembled
 * whole, gaps as zeroes, and only its non-zero clusters are written. With
 * `under` DEST has a view of its own below what moves (its backing, or its
 * own data for commit): exactly the planned ranges are written, zeroes
 * included.
 */
struct move_dest {
  const char *name;              /* DEST, for messages */
  const struct format_ops *ops;
  void *st;                      /* opened with FMT_OPEN_WRITE */
  struct io *io;                 /* DEST's io (its file), or NULL */
  int fd;                        /* DEST's file, for the engine; -1 = none */
  bool under;
  bool compress;                 /* whole clusters through pwrite_compressed */
  /* DEST is a file the job created (a copy's new DEST): its writes go
   * past the page cache from a smaller size (job_direct_writes). */
  bool fresh;
  /* Data moves as the layers hold it, all-zero data included (commit):
   * with `under`, whole clusters go file to file by copy_file_range. */
  bool as_is;
};

struct move_params {
  struct chain *src;
  unsigned from, stop;           /* layers whose allocations move */
  uint64_t size;                 /* guest bytes walked, from 0 */
  bool zeroes;                   /* zero ranges move too (as zero writes) */
  unsigned flags;                /* QC_JOB_NO_URING, QC_JOB_DIRECT */
};

struct mover;

int mover_new (const struct move_params *p, const struct move_dest *d,
               struct mover **out);
/* Move at most budget bytes of data (a step may end a little past it for
 * whole clusters); *moved gets the data bytes completed. With keep_full
 * the step returns once it has issued its budget, its windows still in
 * flight (they complete in later steps, or in mover_finish); else it
 * returns with all it issued done. 1 when all is done, 0 when more
 * remains, -errno after set_error. */
int mover_step (struct mover *m, uint64_t budget, bool keep_full,
                uint64_t *moved);
/* Data bytes planned so far: the job's end (it grows only for images with
 * more ranges than a planning batch). */
uint64_t mover_planned (const struct mover *m);
/* A job's step on m: mover_step, with the job's progress (cur, end). */
int mover_job_step (struct mover *m, struct qc_job *j, uint64_t budget,
                    uint64_t *moved);
/* Wait for what is in flight (after an abort or a failure too: it is
 * never cancelled unless the engine broke), and detach from DEST's state:
 * DEST can then be flushed or closed. */
int mover_finish (struct mover *m);
void mover_free (struct mover *m);

#endif
