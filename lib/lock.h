/* Image locks compatible with QEMU's: OFD byte locks on a file's permissions. */
#ifndef QC_LOCK_H
#define QC_LOCK_H

#include "io.h"

enum io_lock_mode {
  /* We read the image and need nobody to write or resize it meanwhile:
   * what QEMU takes for a read-only open or a backing file. */
  IO_LOCK_READ,
  /* We write the image: nobody else may write or resize it, readers that
   * share writes (qemu-img -U) still may open it. QEMU's read-write open. */
  IO_LOCK_WRITE,
};

/* Lock io's file (path names it in messages). On a conflict with another
 * open of the file, -EAGAIN with a message; on a file system without OFD
 * locks, 0 without locking; nothing for in-memory io. The locks live as
 * long as io's open file description: io_close releases them. Call once
 * per io, on a description that holds no locks yet. */
int io_lock (struct io *io, const char *path, enum io_lock_mode mode);

#endif
