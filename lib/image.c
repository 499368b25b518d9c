/* The image handle: open a chain, describe its members, read and map its guest view. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "errors.h"
#include "internal.h"

struct qc_image *
qc_open (const char *path, const struct qc_open_opts *opts)
{
  struct chain_policy policy;
  struct qc_image *img;
  int r;

  clear_error ();
  if (path == NULL || *path == '\0') {
    public_error (set_error (EINVAL, "no image name given"));
    return NULL;
  }
  img = calloc (1, sizeof *img);
  if (img == NULL) {
    public_error (set_error (ENOMEM, "out of memory"));
    return NULL;
  }
  opts_to_policy (opts, &policy);
  /* Inspection shares everything, as qemu-img -U: info works on the disk
   * of a running VM. */
  policy.lock = policy.lock && policy.writable;
  r = chain_open (path, &policy, &img->chain);
  if (r < 0) {
    free (img);
    public_error (r);
    return NULL;
  }
  return img;
}

void
qc_close (struct qc_image *img)
{
  if (img == NULL)
    return;
  chain_close (img->chain);
  free (img);
}

int
qc_chain_length (struct qc_image *img)
{
  return (int) img->chain->n;
}

int
qc_chain_find (struct qc_image *img, const char *name)
{
  int r;

  clear_error ();
  r = chain_find (img->chain, name);
  return r < 0 ? public_error (r) : r;
}

int64_t
qc_get_size (struct qc_image *img)
{
  return (int64_t) img->chain->layers[0].info.virtual_size;
}

static int
check_depth (struct qc_image *img, int depth)
{
  if (depth < 0 || (unsigned) depth >= img->chain->n)
    return set_error (EINVAL, "depth %d is outside the chain (%u layers)",
                      depth, img->chain->n);
  return 0;
}

/* Copy a caller-sized struct: callers built against an older, smaller
 * struct get its prefix. */
static void
copy_sized (void *dst, uint32_t dst_size, const void *src, size_t src_size)
{
  size_t n = dst_size < src_size ? dst_size : src_size;

  memcpy ((char *) dst + sizeof (uint32_t), (const char *) src + sizeof (uint32_t),
          n > sizeof (uint32_t) ? n - sizeof (uint32_t) : 0);
}

int
qc_get_info (struct qc_image *img, int depth, struct qc_info *info)
{
  int r;

  clear_error ();
  r = check_depth (img, depth);
  if (r < 0)
    return public_error (r);
  copy_sized (info, info->struct_size, &img->chain->layers[depth].info,
              sizeof *info);
  return 0;
}

/* The layer at depth if it has snapshot (or bitmap) number index. */
static int
find_item (struct qc_image *img, int depth, uint32_t index, bool bitmap,
           struct layer **lp)
{
  struct layer *l;
  uint32_t n;
  bool op;
  int r;

  r = check_depth (img, depth);
  if (r < 0)
    return r;
  l = &img->chain->layers[depth];
  n = bitmap ? l->info.nb_bitmaps : l->info.nb_snapshots;
  op = bitmap ? l->ops->bitmap != NULL : l->ops->snapshot != NULL;
  if (!op || index >= n)
    return set_image_error (l->path, ENOENT, "no %s number %" PRIu32,
                            bitmap ? "bitmap" : "snapshot", index);
  *lp = l;
  return 0;
}

int
qc_get_snapshot (struct qc_image *img, int depth, uint32_t index,
                 struct qc_snapshot_info *out)
{
  struct qc_snapshot_info s = { .struct_size = sizeof s };
  struct layer *l;
  int r;

  clear_error ();
  r = find_item (img, depth, index, false, &l);
  if (r == 0)
    r = l->ops->snapshot (l->st, index, &s);
  if (r < 0)
    return public_error (r);
  copy_sized (out, out->struct_size, &s, sizeof s);
  return 0;
}

int
qc_get_bitmap (struct qc_image *img, int depth, uint32_t index,
               struct qc_bitmap_info *out)
{
  struct qc_bitmap_info b = { .struct_size = sizeof b };
  struct layer *l;
  int r;

  clear_error ();
  r = find_item (img, depth, index, true, &l);
  if (r == 0)
    r = l->ops->bitmap (l->st, index, &b);
  if (r < 0)
    return public_error (r);
  copy_sized (out, out->struct_size, &b, sizeof b);
  return 0;
}

static int
check_range (struct qc_image *img, uint64_t off, uint64_t len)
{
  uint64_t size = img->chain->layers[0].info.virtual_size;

  if (!range_within (off, len, size))
    return set_image_error (img->chain->layers[0].path, EINVAL,
                            "range %" PRIu64 "+%" PRIu64
                            " is past the end of the image (%" PRIu64 ")",
                            off, len, size);
  return 0;
}

int
qc_pread (struct qc_image *img, void *buf, size_t count, uint64_t offset)
{
  int r;

  clear_error ();
  r = check_range (img, offset, count);
  if (r == 0)
    r = chain_read (img->chain, 0, buf, count, offset);
  return r < 0 ? public_error (r) : 0;
}

/* qemu-img map's rule: same flags and depth, and contiguous host offsets
 * when there are offsets. */
static bool
mergeable (const struct qc_extent *a, const struct qc_extent *b)
{
  if (a->length == 0)
    return false;
  if (a->zero != b->zero || a->data != b->data || a->depth != b->depth
      || a->present != b->present || a->has_offset != b->has_offset)
    return false;
  return !a->has_offset || a->offset + a->length == b->offset;
}

int
qc_map (struct qc_image *img, uint64_t offset, uint64_t length,
        qc_extent_cb cb, void *opaque)
{
  struct qc_extent cur = { 0 }, next;
  struct chain_cursor cc;
  uint64_t end = offset + length;
  int r;

  clear_error ();
  r = check_range (img, offset, length);
  if (r < 0)
    return public_error (r);
  if ((r = chain_cursor_init (&cc, img->chain)) < 0)
    return public_error (r);
  cur.start = offset;
  while (offset < end) {
    r = chain_block_status_cur (img->chain, &cc, 0, img->chain->n, offset,
                                end - offset, &next);
    if (r < 0) {
      r = public_error (r);
      goto out;
    }
    if (mergeable (&cur, &next))
      cur.length += next.length;
    else {
      if (cur.length && (r = cb (opaque, &cur)) != 0)
        goto out;
      cur = next;
    }
    offset += next.length;
  }
  r = 0;
  if (cur.length)
    r = cb (opaque, &cur);
 out:
  chain_cursor_free (&cc);
  return r;
}
