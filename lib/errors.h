/* Thread-local last error: internal setters behind qc_get_error()/qc_get_errno(). */
#ifndef QC_ERRORS_H
#define QC_ERRORS_H

/*
 * Internal functions return 0 (or a positive value) on success and -errno on
 * failure, liburing style, having recorded a one-line message first. The
 * message should name the image: "base.qcow2: L1 table offset is not aligned".
 * Public entry points turn that into -1/NULL with errno set.
 */

/* Record the message, return -errnum (errnum is a positive errno value). */
int set_error (int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* Same, with the message prefixed by "NAME: ". */
int set_image_error (const char *name, int errnum, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* True when an error was recorded since the last clear_error(). */
int have_error (void);
void clear_error (void);
/* For public wrappers: set errno from the last error and return -1. */
int public_error (int r);

#endif
