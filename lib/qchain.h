/* qchain.h: the public API of libqchain, an offline engine for qcow2/raw backing chains. */
#ifndef QCHAIN_H
#define QCHAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions
 * - Handles are opaque. Functions returning a pointer return NULL on error;
 *   functions returning int return -1 on error. Either way the calling
 *   thread's last error holds a one-line message (naming the image) and an
 *   errno value, read with qc_get_error() and qc_get_errno().
 * - Sizes and offsets are bytes. Strings are NUL-terminated UTF-8/bytes.
 * - Nothing here is thread-safe on one handle; distinct handles may be used
 *   from distinct threads.
 */

#define QC_VERSION_MAJOR 0
#define QC_VERSION_MINOR 1
#define QC_VERSION_MICRO 0

const char *qc_version (void);

/* "10G", "64k", "512": a byte count with an optional binary suffix
 * (B K M G T P E, any case, optionally followed by "iB" or "B").
 * Returns 0, or -1 with errno EINVAL (no last error is set). */
int qc_parse_size (const char *s, uint64_t *out);

/* ---- Errors ---------------------------------------------------------- */

/* The message of the last error on this thread, or NULL if none. */
const char *qc_get_error (void);
/* The errno of the last error on this thread (0 if unknown). */
int qc_get_errno (void);

/* ---- Open options: how a chain is resolved (SPEC "chain policy") ----- */

struct qc_open_opts;

struct qc_open_opts *qc_open_opts_new (void);
void qc_open_opts_free (struct qc_open_opts *opts);
/* Format of the image named to qc_open ("qcow2" or "raw"); NULL = detect:
 * the qcow2 magic means qcow2, anything else is raw. */
int qc_open_opts_set_format (struct qc_open_opts *opts, const char *format);
/* Allow probing backing files that name no backing format (default off).
 * A probe recognises qcow2 by its magic only; anything else is raw. */
int qc_open_opts_set_probe (struct qc_open_opts *opts, int allow);
/* Maximum number of layers in a chain, the named image included (default 256). */
int qc_open_opts_set_max_depth (struct qc_open_opts *opts, unsigned depth);
/* Confine backing files to this directory (may be called several times;
 * once called, every backing file must resolve inside one of them). */
int qc_open_opts_add_allowed_dir (struct qc_open_opts *opts, const char *dir);
/* Open the top image for writing (default read-only). */
int qc_open_opts_set_writable (struct qc_open_opts *opts, int writable);
/* Open only the named image, not its backing chain. */
int qc_open_opts_set_no_backing (struct qc_open_opts *opts, int no_backing);
/* Open to describe only: encrypted images and images with an external data
 * file are accepted (qc_get_info works), reading guest data is refused. */
int qc_open_opts_set_describe_only (struct qc_open_opts *opts, int yes);
/* Take no image locks (default off), like qemu-img -U. Jobs and writable
 * opens otherwise lock as QEMU does and fail with EAGAIN on an image a
 * running QEMU or qemu-img holds; read-only qc_open never locks. */
int qc_open_opts_set_force_share (struct qc_open_opts *opts, int yes);

/* ---- Images and chains ----------------------------------------------- */

struct qc_image;

/* Open an image and, unless told otherwise, its whole backing chain. */
struct qc_image *qc_open (const char *path, const struct qc_open_opts *opts);
void qc_close (struct qc_image *img);

/* Number of layers in the opened chain (1 = no backing file). */
int qc_chain_length (struct qc_image *img);
/* Find a chain member by name: "@N", a path as written in an overlay's
 * header, or any path naming the same file. Returns the depth or -1. */
int qc_chain_find (struct qc_image *img, const char *name);

/* Guest-visible size of the image (depth 0). */
int64_t qc_get_size (struct qc_image *img);

#define QC_INFO_HAS_BACKING    (1u << 0)
#define QC_INFO_DIRTY          (1u << 1)
#define QC_INFO_CORRUPT        (1u << 2)
#define QC_INFO_LAZY_REFCOUNTS (1u << 3)
#define QC_INFO_EXTENDED_L2    (1u << 4)
#define QC_INFO_ENCRYPTED      (1u << 5)
#define QC_INFO_DATA_FILE      (1u << 6)
#define QC_INFO_DATA_FILE_RAW  (1u << 7)
#define QC_INFO_BITMAPS        (1u << 8)

/* Description of one chain member. Strings belong to the image handle. */
struct qc_info {
  uint32_t struct_size;          /* set by the caller: sizeof (struct qc_info) */
  uint32_t flags;                /* QC_INFO_* */
  const char *filename;          /* path as opened */
  const char *format;            /* "qcow2" or "raw" */
  uint64_t virtual_size;
  uint64_t actual_size;          /* bytes allocated on the host */
  uint32_t cluster_size;         /* 0 for raw */
  uint32_t qcow2_version;        /* 2 or 3; 0 for raw */
  uint32_t refcount_bits;
  const char *compression_type;  /* "zlib" or "zstd"; NULL for raw */
  const char *backing_filename;  /* as written in the header, or NULL */
  const char *backing_format;    /* from the backing-format extension, or NULL */
  const char *full_backing_filename; /* resolved path, or NULL */
  const char *data_file;         /* external data file name, or NULL */
  uint32_t encryption;           /* 0 none, 1 aes, 2 luks */
  uint32_t nb_snapshots;
  uint32_t nb_bitmaps;
};

int qc_get_info (struct qc_image *img, int depth, struct qc_info *info);

struct qc_snapshot_info {
  uint32_t struct_size;
  const char *id;
  const char *name;
  uint64_t vm_state_size;
  uint64_t date_sec;
  uint32_t date_nsec;
  uint64_t vm_clock_nsec;
  uint64_t icount;               /* UINT64_MAX when absent */
};
int qc_get_snapshot (struct qc_image *img, int depth, uint32_t index,
                     struct qc_snapshot_info *out);

#define QC_BITMAP_IN_USE (1u << 0)
#define QC_BITMAP_AUTO   (1u << 1)

struct qc_bitmap_info {
  uint32_t struct_size;
  const char *name;
  uint64_t granularity;          /* bytes */
  uint32_t flags;                /* QC_BITMAP_* */
};
int qc_get_bitmap (struct qc_image *img, int depth, uint32_t index,
                   struct qc_bitmap_info *out);

/* ---- Guest view ------------------------------------------------------ */

/* Read count bytes of the guest view at offset. Returns 0 or -1. */
int qc_pread (struct qc_image *img, void *buf, size_t count, uint64_t offset);

/* One extent of the guest view, as qemu-img map reports it. */
struct qc_extent {
  uint64_t start;
  uint64_t length;
  uint32_t depth;       /* layer that decides this range */
  uint8_t present;      /* some layer allocates it */
  uint8_t zero;         /* reads as zeroes */
  uint8_t data;         /* backed by data */
  uint8_t has_offset;
  uint64_t offset;      /* host offset in layer `depth`'s file */
};

typedef int (*qc_extent_cb) (void *opaque, const struct qc_extent *e);

/* Call cb for each extent of [offset, offset+length) in order, adjacent
 * extents merged as qemu-img map merges them. A callback returning
 * non-zero stops the walk; qc_map then returns that value. */
int qc_map (struct qc_image *img, uint64_t offset, uint64_t length,
            qc_extent_cb cb, void *opaque);

/* Compare guest views. Returns 0 equal, 1 different (*first_diff set to the
 * first differing offset; a size difference counts as different unless the
 * tail of the longer reads as zeroes), -1 error. */
int qc_compare (struct qc_image *a, struct qc_image *b, uint64_t *first_diff);

/* ---- Creating images ------------------------------------------------- */

/* Create IMAGE, which must not exist. format "qcow2" (NULL) or "raw"; size
 * 0 = the backing file's size. backing_format NULL = read from the backing
 * file's header when it is qcow2 (a backing file is never probed as raw).
 * options as qemu-img -o: "compat=1.1,cluster_size=65536,refcount_bits=16,
 * extended_l2=on,compression_type=zstd,lazy_refcounts=on". */
int qc_create (const char *path, const char *format, uint64_t size,
               const char *backing, const char *backing_format,
               const char *options);

/* ---- Checking -------------------------------------------------------- */

#define QC_CHECK_REPAIR_LEAKS (1u << 0)
#define QC_CHECK_REPAIR_ALL   (1u << 1)

struct qc_check_result {
  uint32_t struct_size;
  uint64_t corruptions;
  uint64_t leaks;
  uint64_t check_errors;
  uint64_t corruptions_fixed;
  uint64_t leaks_fixed;
  uint64_t image_end_offset;
  uint64_t total_clusters;
  uint64_t allocated_clusters;
  uint64_t fragmented_clusters;
  uint64_t compressed_clusters;
};

/* Check IMAGE; report (may be NULL) receives the findings.
 * Returns, as qemu-img check exits: 0 clean, 1 the check could not finish,
 * 2 corruptions, 3 leaks only (counted after any repair); -1 on error (the
 * image could not be opened). result may be NULL. Repairs open IMAGE for
 * writing. raw images have nothing to check: -1 with ENOTSUP. */
/* Receives each finding of a check as one line, worded as qemu-img check
 * words it (e.g. "Leaked cluster 5 refcount=1 reference=0"). */
typedef void (*qc_check_report_cb) (void *opaque, const char *line);

int qc_check (const char *path, const char *format, unsigned flags,
              struct qc_check_result *result, qc_check_report_cb report,
              void *opaque);

/* ---- Block jobs ------------------------------------------------------ */

enum qc_job_type {
  QC_JOB_COMMIT = 1,
  QC_JOB_COPY = 2,
  QC_JOB_PULL = 3,
  QC_JOB_REBASE = 4,
};

enum qc_job_state {
  QC_JOB_RUNNING = 0,
  QC_JOB_DONE = 1,
  QC_JOB_FAILED = 2,
  QC_JOB_ABORTED = 3,
};

/* commit flags (libvirt's VIR_DOMAIN_BLOCK_COMMIT_*) */
#define QC_COMMIT_SHALLOW     (1u << 0)
#define QC_COMMIT_DELETE      (1u << 1)
#define QC_COMMIT_KEEP_ACTIVE (1u << 2)
#define QC_COMMIT_FORCE       (1u << 3)

/* copy flags (libvirt's VIR_DOMAIN_BLOCK_REBASE_* with COPY) */
#define QC_COPY_SHALLOW        (1u << 0)
#define QC_COPY_REUSE_EXT      (1u << 1)
#define QC_COPY_RAW            (1u << 2)
#define QC_COPY_COMPRESS_ZLIB  (1u << 3)
#define QC_COPY_COMPRESS_ZSTD  (1u << 4)
#define QC_COPY_QCOW2          (1u << 5)  /* DEST qcow2 whatever SRC's format */

/* rebase flags */
#define QC_REBASE_UNSAFE       (1u << 0)

/* flags for every job */
#define QC_JOB_NO_URING        (1u << 16)  /* use pread/pwrite, not io_uring */
#define QC_JOB_DIRECT          (1u << 17)  /* O_DIRECT data reads and writes */
/* Where the data a job writes goes. By default it bypasses the page cache
 * (O_DIRECT) when the job moves at least 64 MiB, and goes through it when
 * less. DIRECT_WRITES: always bypass (reads stay cached); BUFFERED: never,
 * reads or writes. At most one of DIRECT, DIRECT_WRITES and BUFFERED. */
#define QC_JOB_DIRECT_WRITES   (1u << 18)
#define QC_JOB_BUFFERED        (1u << 19)
#define QC_JOB_IO_FLAGS (QC_JOB_NO_URING | QC_JOB_DIRECT | QC_JOB_DIRECT_WRITES \
                         | QC_JOB_BUFFERED)

struct qc_job;

/* base/top: chain members of active by name or "@N"; NULL as in libvirt. */
struct qc_job *qc_commit_start (const char *active, const char *base,
                                const char *top, uint64_t bandwidth,
                                unsigned flags,
                                const struct qc_open_opts *opts);
/* dest_options: creation options as qc_create, may be NULL. */
struct qc_job *qc_copy_start (const char *src, const char *dest,
                              const char *dest_options, uint64_t bandwidth,
                              unsigned flags, const struct qc_open_opts *opts);
/* base: chain member that stays below image, NULL = pull everything. */
struct qc_job *qc_pull_start (const char *image, const char *base,
                              uint64_t bandwidth, unsigned flags,
                              const struct qc_open_opts *opts);
/* new_base: "" or NULL = no backing file. */
struct qc_job *qc_rebase_start (const char *image, const char *new_base,
                                const char *new_base_format,
                                uint64_t bandwidth, unsigned flags,
                                const struct qc_open_opts *opts);

struct qc_job_info {
  uint32_t struct_size;
  enum qc_job_type type;
  enum qc_job_state state;
  uint64_t cur;          /* bytes done */
  uint64_t end;          /* bytes to do (may grow while planning) */
  uint64_t bandwidth;    /* bytes per second, 0 = unlimited */
  uint64_t elapsed_ns;
};

int qc_job_info (struct qc_job *job, struct qc_job_info *info);
/* Change the bandwidth limit (bytes/s, 0 = unlimited), also mid-job. */
int qc_job_set_speed (struct qc_job *job, uint64_t bandwidth);
/* Ask the job to stop; safe from a signal handler. */
int qc_job_abort (struct qc_job *job);

typedef void (*qc_progress_cb) (void *opaque, const struct qc_job_info *info);
/* Run to completion, calling cb as progress is made. Returns 0 or -1. */
int qc_job_run (struct qc_job *job, qc_progress_cb cb, void *opaque);

/* Event-loop mode: poll the fd for POLLIN, then call qc_job_step, which does
 * a bounded amount of work without blocking for long. qc_job_step returns 1
 * when the job has ended (successfully), 0 when there is more, -1 on error. */
int qc_job_get_fd (struct qc_job *job);
int qc_job_step (struct qc_job *job);

/* Human-readable note of what the job left (e.g. "base.qcow2 is now the
 * image to use"), or NULL. Valid until qc_job_free. */
const char *qc_job_result (struct qc_job *job);
void qc_job_free (struct qc_job *job);

#ifdef __cplusplus
}
#endif

#endif /* QCHAIN_H */
