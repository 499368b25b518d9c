/* The internal snapshot table: bounds-checked parsing and the snapshot() op. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-order.h"
#include "checked-overflow.h"
#include "errors.h"
#include "rounding.h"
#include "qcow2.h"

static char *
dup_bytes (const unsigned char *p, size_t len)
{
  char *s = malloc (len + 1);

  if (s)
    {
      memcpy (s, p, len);
      s[len] = '\0';
    }
  return s;
}

/* The variable part of an entry: extra data, id, name. */
static int
parse_variable (struct qcow2_state *s, struct qcow2_snapshot *sn,
                const unsigned char *v, uint16_t id_len, uint16_t name_len)
{
  const unsigned char *x = v;
  uint32_t n = sn->extra_data_size;

  if (n >= 8)
    sn->vm_state_size = get_be64 (x);
  if (n >= 16)
    sn->disk_size = get_be64 (x + 8);
  if (n >= 24)
    sn->icount = get_be64 (x + 16);
  sn->extra_data = malloc (n ? n : 1);
  sn->id = dup_bytes (v + n, id_len);
  sn->name = dup_bytes (v + n + id_len, name_len);
  if (sn->extra_data == NULL || sn->id == NULL || sn->name == NULL)
    return set_error (ENOMEM, "out of memory");
  memcpy (sn->extra_data, x, n);
  return 0;
}

/* Entry i at *off; on success *off moves past it and its padding. */
static int
read_entry (struct qcow2_state *s, uint32_t i, uint64_t *off)
{
  struct qcow2_snapshot *sn = &s->snapshots[i];
  unsigned char fixed[QCOW2_SNAPSHOT_FIXED_LEN];
  unsigned char *var = NULL;
  uint16_t id_len, name_len;
  uint64_t var_len, used;
  int r;

  if (!range_within (*off, sizeof fixed, s->file_size))
    return set_image_error (s->name, EINVAL, "snapshot table entry %" PRIu32
                            " lies past end of file", i);
  r = io_pread (s->io, fixed, sizeof fixed, *off);
  if (r < 0)
    return r;
  sn->l1_table_offset = get_be64 (fixed);
  sn->l1_size = get_be32 (fixed + 8);
  id_len = get_be16 (fixed + 12);
  name_len = get_be16 (fixed + 14);
  sn->date_sec = get_be32 (fixed + 16);
  sn->date_nsec = get_be32 (fixed + 20);
  sn->vm_clock_nsec = get_be64 (fixed + 24);
  sn->vm_state_size = get_be32 (fixed + 32);
  sn->extra_data_size = get_be32 (fixed + 36);
  sn->disk_size = UINT64_MAX;
  sn->icount = UINT64_MAX;
  if (sn->extra_data_size > QCOW2_MAX_SNAPSHOT_EXTRA)
    return set_image_error (s->name, EINVAL, "snapshot table entry %" PRIu32
                            ": %" PRIu32 " bytes of extra data (at most "
                            "1024)", i, sn->extra_data_size);

  /* At most 1024 + 2 * 65535 bytes. */
  var_len = (uint64_t) sn->extra_data_size + id_len + name_len;
  used = *off - s->h.snapshots_offset + sizeof fixed + var_len;
  if (used > QCOW2_MAX_SNAPSHOT_TABLE)
    return set_image_error (s->name, EINVAL, "snapshot table exceeds 64 MiB "
                            "at entry %" PRIu32, i);
  if (!range_within (*off + sizeof fixed, var_len, s->file_size))
    return set_image_error (s->name, EINVAL, "snapshot table entry %" PRIu32
                            " runs past end of file", i);
  var = malloc (var_len ? var_len : 1);
  if (var == NULL)
    return set_error (ENOMEM, "out of memory");
  r = io_pread (s->io, var, var_len, *off + sizeof fixed);
  if (r == 0)
    r = parse_variable (s, sn, var, id_len, name_len);
  free (var);
  *off += ROUND_UP (sizeof fixed + var_len, 8);
  return r;
}

int
qcow2_read_snapshots (struct qcow2_state *s)
{
  uint64_t off = s->h.snapshots_offset;
  uint32_t i;
  int r;

  if (s->h.nb_snapshots == 0)
    return 0;
  /* nb_snapshots was checked against 65536 and the file size. */
  s->snapshots = calloc (s->h.nb_snapshots, sizeof *s->snapshots);
  if (s->snapshots == NULL)
    return set_error (ENOMEM, "out of memory");
  for (i = 0; i < s->h.nb_snapshots; i++)
    {
      r = read_entry (s, i, &off);
      if (r < 0)
        return r;
    }
  return 0;
}

void
qcow2_free_snapshots (struct qcow2_state *s)
{
  uint32_t i;

  if (s->snapshots == NULL)
    return;
  for (i = 0; i < s->h.nb_snapshots; i++)
    {
      free (s->snapshots[i].id);
      free (s->snapshots[i].name);
      free (s->snapshots[i].extra_data);
    }
  free (s->snapshots);
  s->snapshots = NULL;
}

int
qcow2_snapshot_op (void *st, uint32_t index, struct qc_snapshot_info *out)
{
  struct qcow2_state *s = st;
  const struct qcow2_snapshot *sn;

  if (index >= s->h.nb_snapshots || s->snapshots == NULL)
    return set_image_error (s->name, EINVAL,
                            "no snapshot number %" PRIu32, index);
  sn = &s->snapshots[index];
  out->id = sn->id;
  out->name = sn->name;
  out->vm_state_size = sn->vm_state_size;
  out->date_sec = sn->date_sec;
  out->date_nsec = sn->date_nsec;
  out->vm_clock_nsec = sn->vm_clock_nsec;
  out->icount = sn->icount;
  return 0;
}
