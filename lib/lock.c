/* Image locking as QEMU's file-posix does it, so that QEMU and qchain see each other's opens. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>

#include "errors.h"
#include "io.h"
#include "lock.h"

/* QEMU's block permissions (BLK_PERM_* in include/block/block-common.h):
 * while an open holds permission bit n it read-locks byte PERM_BASE + n,
 * while it does not share bit n, byte SHARED_BASE + n (block/file-posix.c,
 * RAW_LOCK_PERM_BASE and RAW_LOCK_SHARED_BASE). Byte 4 of each range is the
 * graph-mod permission that QEMU 6.2 dropped: nobody asks for it any more. */
#define PERM_BASE   100
#define SHARED_BASE 200
#define N_PERMS     4

enum {
  PERM_CONSISTENT_READ = 1u << 0,
  PERM_WRITE           = 1u << 1,
  PERM_WRITE_UNCHANGED = 1u << 2,
  PERM_RESIZE          = 1u << 3,
};

static int
set_byte (int fd, off_t off, short type)
{
  struct flock fl = {
    .l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
  };

  while (fcntl (fd, F_OFD_SETLK, &fl) < 0)
    if (errno != EINTR)
      return -errno;
  return 0;
}

/* 1 when another open file description has a lock on the byte: asking for
 * a write lock reports read locks too, and never our own. */
static int
byte_taken (int fd, off_t off)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1,
  };

  if (fcntl (fd, F_OFD_GETLK, &fl) < 0)
    return -errno;
  return fl.l_type != F_UNLCK;
}

static void
release (int fd)
{
  struct flock fl = {
    .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = PERM_BASE,
    .l_len = SHARED_BASE + N_PERMS - PERM_BASE,
  };

  (void) fcntl (fd, F_OFD_SETLK, &fl);
}

static int
take (int fd, unsigned perm, unsigned shared)
{
  unsigned i;
  int r = 0;

  for (i = 0; i < N_PERMS && r == 0; i++) {
    if (perm & (1u << i))
      r = set_byte (fd, PERM_BASE + i, F_RDLCK);
    if (r == 0 && !(shared & (1u << i)))
      r = set_byte (fd, SHARED_BASE + i, F_RDLCK);
  }
  return r;
}

/* 1 on a conflict: someone does not share a permission we hold, or holds
 * one we do not share. */
static int
conflicts (int fd, unsigned perm, unsigned shared)
{
  unsigned i;
  int r = 0;

  for (i = 0; i < N_PERMS && r == 0; i++) {
    if (perm & (1u << i))
      r = byte_taken (fd, SHARED_BASE + i);
    if (r == 0 && !(shared & (1u << i)))
      r = byte_taken (fd, PERM_BASE + i);
  }
  return r;
}

static bool
unsupported (int e)
{
  return e == EINVAL || e == ENOTSUP || e == ENOLCK || e == ENOSYS;
}

int
io_lock (struct io *io, const char *path, enum io_lock_mode mode)
{
  /* A qcow2 file node's shared set in QEMU: metadata must stay put. */
  unsigned shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
  unsigned perm = PERM_CONSISTENT_READ;
  int r;

  if (io->fd < 0)
    return 0;
  if (mode == IO_LOCK_WRITE)
    perm |= PERM_WRITE | PERM_RESIZE;
  /* Take, then test, in QEMU's order: of two opens racing, each then sees
   * the other's bytes, where testing first could let both through. */
  r = take (io->fd, perm, shared);
  if (r == 0)
    r = conflicts (io->fd, perm, shared);
  if (r == 0)
    return 0;
  release (io->fd);
  if (r == 1 || r == -EAGAIN || r == -EACCES)
    return set_image_error (path, EAGAIN, "is in use by another process (a "
                            "running QEMU or qemu-img holds a conflicting "
                            "lock)");
  /* Where the kernel has no OFD locks QEMU opens unlocked; so do we. */
  if (unsupported (-r))
    return 0;
  errno = -r;
  return set_image_error (path, -r, "cannot lock: %m");
}
