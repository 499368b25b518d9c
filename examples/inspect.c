/* inspect.c: describe a qcow2/raw backing chain with libqchain.
 *
 * Usage: inspect IMAGE [FORMAT]
 *
 * Prints every member of IMAGE's backing chain, then how many bytes of the
 * guest view each layer provides (from qc_map), then shows what an error
 * looks like by opening a file that does not exist.
 *
 * Build it as any program using the library:
 *
 *   cc -o inspect inspect.c $(pkg-config --cflags --libs qchain)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qchain.h>

/* Bytes of the guest view, per deciding layer, as qc_map reports them. */
struct summary {
  int nlayers;
  uint64_t *data;             /* [depth]: allocated, reads as data */
  uint64_t *zero;             /* [depth]: allocated, reads as zeroes */
  uint64_t unallocated;       /* allocated in no layer (reads as zeroes) */
  uint64_t extents;
};

static int
count_extent (void *opaque, const struct qc_extent *e)
{
  struct summary *s = opaque;

  s->extents++;
  if (!e->present)
    s->unallocated += e->length;
  else if (e->depth < (uint32_t) s->nlayers) {
    if (e->data)
      s->data[e->depth] += e->length;
    else
      s->zero[e->depth] += e->length;
  }
  return 0;                   /* non-zero would stop the walk */
}

static void
print_chain (struct qc_image *img)
{
  int depth, n = qc_chain_length (img);

  printf ("chain: %d layer%s\n", n, n == 1 ? "" : "s");
  for (depth = 0; depth < n; depth++) {
    /* struct_size tells the library which version of the struct we have. */
    struct qc_info info = { .struct_size = sizeof info };

    if (qc_get_info (img, depth, &info) == -1) {
      fprintf (stderr, "inspect: %s\n", qc_get_error ());
      continue;
    }
    printf ("  @%d %s\n", depth, info.filename);
    printf ("     format: %s, virtual size: %" PRIu64 " bytes",
            info.format, info.virtual_size);
    if (info.cluster_size)
      printf (", cluster size: %" PRIu32, info.cluster_size);
    printf ("\n");
    if (info.flags & QC_INFO_HAS_BACKING)
      printf ("     backing: %s (format: %s)\n", info.backing_filename,
              info.backing_format ? info.backing_format : "not recorded");
  }
}

static int
print_allocation (struct qc_image *img)
{
  struct summary s = { .nlayers = qc_chain_length (img) };
  int64_t size = qc_get_size (img);
  int depth, r = -1;

  s.data = calloc ((size_t) s.nlayers, sizeof *s.data);
  s.zero = calloc ((size_t) s.nlayers, sizeof *s.zero);
  if (s.data == NULL || s.zero == NULL) {
    perror ("inspect: calloc");
    goto out;
  }
  if (size > 0 && qc_map (img, 0, (uint64_t) size, count_extent, &s) == -1) {
    fprintf (stderr, "inspect: %s\n", qc_get_error ());
    goto out;
  }
  printf ("allocation of %" PRId64 " bytes:\n", size);
  for (depth = 0; depth < s.nlayers; depth++)
    printf ("  @%d: %" PRIu64 " bytes data, %" PRIu64 " bytes zero\n",
            depth, s.data[depth], s.zero[depth]);
  printf ("  unallocated: %" PRIu64 " bytes\n", s.unallocated);
  printf ("  extents: %" PRIu64 "\n", s.extents);
  r = 0;
 out:
  free (s.data);
  free (s.zero);
  return r;
}

/* Every failing call leaves a message naming the image, and an errno. */
static void
show_error_handling (const char *path)
{
  static const char suffix[] = ".does-not-exist";
  struct qc_image *img;
  char *missing = malloc (strlen (path) + sizeof suffix);

  if (missing == NULL) {
    perror ("inspect: malloc");
    return;
  }
  strcpy (missing, path);
  strcat (missing, suffix);
  img = qc_open (missing, NULL);
  if (img == NULL) {
    int e = qc_get_errno ();

    printf ("opening a missing file fails as it should:\n");
    printf ("  qc_get_error: %s\n", qc_get_error ());
    printf ("  qc_get_errno: %d%s\n", e, e == ENOENT ? " (ENOENT)" : "");
  }
  else {
    printf ("unexpectedly opened %s\n", missing);
    qc_close (img);
  }
  free (missing);
}

int
main (int argc, char *argv[])
{
  struct qc_open_opts *opts;
  struct qc_image *img;
  int r;

  if (argc < 2 || argc > 3) {
    fprintf (stderr, "usage: %s IMAGE [qcow2|raw]\n", argv[0]);
    return 2;
  }
  printf ("libqchain %s\n", qc_version ());

  opts = qc_open_opts_new ();
  if (opts == NULL
      || (argc == 3 && qc_open_opts_set_format (opts, argv[2]) == -1)) {
    fprintf (stderr, "inspect: %s\n", qc_get_error ());
    qc_open_opts_free (opts);
    return 1;
  }
  img = qc_open (argv[1], opts);  /* read-only, the whole chain */
  qc_open_opts_free (opts);       /* the image does not keep the options */
  if (img == NULL) {
    fprintf (stderr, "inspect: %s\n", qc_get_error ());
    return 1;
  }

  print_chain (img);
  r = print_allocation (img);
  qc_close (img);

  show_error_handling (argv[1]);
  return r == 0 ? 0 : 1;
}
