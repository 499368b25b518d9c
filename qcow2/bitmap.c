/* The persistent bitmap directory: bounds-checked parsing and the bitmap() op. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

#define BITMAP_ENTRY_FIXED_LEN 24u
#define BITMAP_MAX_NAME 1023u
#define BITMAP_TYPE_DIRTY 1u
#define BITMAP_KNOWN_FLAGS 0x7u      /* in_use, auto, extra_data_compatible */

/* Entry i at dir + *pos (dir_size bytes in all); *pos moves past it. */
static int
parse_entry (struct qcow2_state *s, const unsigned char *dir,
             uint64_t dir_size, uint32_t i, uint64_t *pos)
{
  struct qcow2_bitmap *b = &s->bitmaps[i];
  const unsigned char *e = dir + *pos;
  uint64_t left = dir_size - *pos, len;
  uint32_t flags, extra;
  uint16_t name_len;

  if (left < BITMAP_ENTRY_FIXED_LEN)
    return set_image_error (s->name, EINVAL, "bitmap directory entry %"
                            PRIu32 " runs past the directory", i);
  b->table_offset = get_be64 (e);
  b->table_size = get_be32 (e + 8);
  flags = get_be32 (e + 12);
  b->type = e[16];
  b->granularity_bits = e[17];
  name_len = get_be16 (e + 18);
  extra = get_be32 (e + 20);
  len = (uint64_t) BITMAP_ENTRY_FIXED_LEN + extra + name_len;
  if (name_len == 0 || name_len > BITMAP_MAX_NAME)
    return set_image_error (s->name, EINVAL, "bitmap %" PRIu32 ": name_size %"
                            PRIu16 " out of range (1 to 1023)", i, name_len);
  if (len > left)
    return set_image_error (s->name, EINVAL, "bitmap directory entry %"
                            PRIu32 " runs past the directory", i);
  if (flags & ~BITMAP_KNOWN_FLAGS)
    return set_image_error (s->name, EINVAL, "bitmap %" PRIu32 ": reserved "
                            "flags 0x%" PRIx32 " set", i, flags);
  if (b->type != BITMAP_TYPE_DIRTY)
    return set_image_error (s->name, EINVAL, "bitmap %" PRIu32 ": unknown "
                            "type %u", i, b->type);
  if (b->granularity_bits > 63)
    return set_image_error (s->name, EINVAL, "bitmap %" PRIu32 ": "
                            "granularity_bits %u out of range", i,
                            b->granularity_bits);
  if (memchr (e + BITMAP_ENTRY_FIXED_LEN + extra, 0, name_len) != NULL)
    return set_image_error (s->name, EINVAL, "bitmap %" PRIu32 ": name "
                            "contains a NUL byte", i);
  b->flags = flags;
  b->name = malloc ((size_t) name_len + 1);
  if (b->name == NULL)
    return set_error (ENOMEM, "out of memory");
  memcpy (b->name, e + BITMAP_ENTRY_FIXED_LEN + extra, name_len);
  b->name[name_len] = '\0';
  *pos += ROUND_UP (len, 8);
  return 0;
}

/* The entries must tile the directory exactly, nb_bitmaps of them. */
static int
parse_directory (struct qcow2_state *s, const unsigned char *dir)
{
  uint64_t pos = 0, size = s->bitmap_dir_size;
  uint32_t i;
  int r;

  for (i = 0; i < s->nb_bitmaps; i++)
    {
      if (pos >= size)
        return set_image_error (s->name, EINVAL, "bitmap directory holds %"
                                PRIu32 " entries, the header says %" PRIu32,
                                i, s->nb_bitmaps);
      r = parse_entry (s, dir, size, i, &pos);
      if (r < 0)
        return r;
    }
  if (pos != size)
    return set_image_error (s->name, EINVAL, "bitmap directory has %" PRIu64
                            " bytes past its %" PRIu32 " entries",
                            size > pos ? size - pos : 0, s->nb_bitmaps);
  return 0;
}

/* Read on first use: reading guest data never needs the directory. */
static int
load_bitmaps (struct qcow2_state *s)
{
  unsigned char *dir;
  int r;

  if (s->bitmaps)
    return 0;
  /* nb_bitmaps <= 65535; the directory <= 64 MiB and inside the file. */
  s->bitmaps = calloc (s->nb_bitmaps, sizeof *s->bitmaps);
  dir = malloc (s->bitmap_dir_size ? s->bitmap_dir_size : 1);
  if (s->bitmaps == NULL || dir == NULL)
    {
      free (dir);
      qcow2_free_bitmaps (s);
      return set_error (ENOMEM, "out of memory");
    }
  r = io_pread (s->io, dir, s->bitmap_dir_size, s->bitmap_dir_offset);
  if (r == 0)
    r = parse_directory (s, dir);
  free (dir);
  if (r < 0)
    qcow2_free_bitmaps (s);
  return r;
}

void
qcow2_free_bitmaps (struct qcow2_state *s)
{
  uint32_t i;

  if (s->bitmaps == NULL)
    return;
  for (i = 0; i < s->nb_bitmaps; i++)
    free (s->bitmaps[i].name);
  free (s->bitmaps);
  s->bitmaps = NULL;
}

int
qcow2_bitmap_op (void *st, uint32_t index, struct qc_bitmap_info *out)
{
  struct qcow2_state *s = st;
  const struct qcow2_bitmap *b;
  int r;

  if (index >= s->nb_bitmaps)
    return set_image_error (s->name, EINVAL,
                            "no bitmap number %" PRIu32, index);
  r = load_bitmaps (s);
  if (r < 0)
    return r;
  b = &s->bitmaps[index];
  out->name = b->name;
  out->granularity = 1ull << b->granularity_bits;
  out->flags = 0;
  if (b->flags & 1)
    out->flags |= QC_BITMAP_IN_USE;
  if (b->flags & 2)
    out->flags |= QC_BITMAP_AUTO;
  return 0;
}
