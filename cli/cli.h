/* Shared pieces of the qchain command: option helpers, JSON output, errors. */
#ifndef QCHAIN_CLI_H
#define QCHAIN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qchain.h"

#define EXIT_USAGE 2

extern const char *progname;

/* Options every command that opens a chain accepts. */
struct chain_args {
  const char *format;        /* -f */
  bool probe;                /* --allow-probe */
  unsigned max_depth;        /* --max-depth */
  const char *dirs[16];      /* --backing-dir */
  unsigned n_dirs;
};

/* getopt_long entries for chain_args; ids start at 0x100. */
#define CHAIN_LONG_OPTS \
  { "allow-probe", no_argument, NULL, 0x100 }, \
  { "max-depth", required_argument, NULL, 0x101 }, \
  { "backing-dir", required_argument, NULL, 0x102 }
#define CHAIN_OPTS_HELP \
  "  -f FMT               format of IMAGE (qcow2 or raw); default: qcow2 if it\n" \
  "                       has the qcow2 magic, else raw\n" \
  "  --allow-probe        probe backing files that name no format (qcow2 by\n" \
  "                       magic, else raw)\n" \
  "  --max-depth N        refuse chains of more than N layers (default 256)\n" \
  "  --backing-dir DIR    backing files must lie inside DIR (repeatable)\n"

/* Handle a chain option (c from getopt); returns 1 if handled, 0 if not,
 * -1 after printing a usage error. */
int chain_arg (const char *cmd, struct chain_args *a, int c, const char *arg);
#define OPEN_DESCRIBE   (1u << 0)   /* describe only (info) */
#define OPEN_NO_BACKING (1u << 1)   /* top image only */
/* Open an image with these options; prints the error and returns NULL. */
struct qc_image *open_image (const char *path, const struct chain_args *a,
                             const char *format, unsigned flags);
/* Print "qchain: MESSAGE" from the library's last error. */
void print_lib_error (void);
void usage_error (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* The usage error for what getopt returned as '?' or ':'. */
void bad_option (const char *cmd, char **argv);
/* Usage error unless fmt is NULL, "qcow2" or "raw". */
int check_format_arg (const char *cmd, const char *opt, const char *fmt);
int parse_u64 (const char *s, uint64_t *v);
/* "1.5 GiB" as qemu-img prints sizes. */
void human_size (uint64_t v, char *buf, size_t n);

/* A tiny JSON writer, formatted as qemu-img formats its JSON output. */
struct json {
  FILE *f;
  int depth;
  bool first[32];
};
void json_init (struct json *j, FILE *f);
void json_begin_object (struct json *j, const char *key);
void json_end_object (struct json *j);
void json_begin_array (struct json *j, const char *key);
void json_end_array (struct json *j);
void json_string (struct json *j, const char *key, const char *v);
void json_u64 (struct json *j, const char *key, uint64_t v);
void json_bool (struct json *j, const char *key, bool v);
void json_finish (struct json *j);
/* A JSON string literal (quotes included) of s. */
void json_print_string (FILE *f, const char *s);

/* ---- run.c: block jobs ---- */

#define JOB_PROGRESS_NONE 0
#define JOB_PROGRESS_BAR  1          /* -p: a bar on a terminal (stderr) */
#define JOB_PROGRESS_JSON 2          /* --progress=json: lines on stdout */

/* Options every job command takes. */
struct job_args {
  uint64_t bandwidth;                /* bytes/s, 0 = unlimited */
  int progress;                      /* JOB_PROGRESS_* */
  bool say_result;                   /* print the job's result line (stdout;
                                        with --progress=json as {"result"}) */
  unsigned flags;                    /* QC_JOB_DIRECT, _DIRECT_WRITES,
                                        _BUFFERED */
};

/* getopt_long ids for job_args (add "p" to the short options). */
#define JOB_OPT_BANDWIDTH 0x180
#define JOB_OPT_PROGRESS  0x181
#define JOB_OPT_DIRECT    0x182
#define JOB_OPT_CACHE     0x183
#define JOB_OPT_NO_URING  0x184
#define JOB_LONG_OPTS \
  { "bandwidth", required_argument, NULL, JOB_OPT_BANDWIDTH }, \
  { "progress", required_argument, NULL, JOB_OPT_PROGRESS }, \
  { "direct", no_argument, NULL, JOB_OPT_DIRECT }, \
  { "cache", required_argument, NULL, JOB_OPT_CACHE }, \
  { "no-uring", no_argument, NULL, JOB_OPT_NO_URING }
#define JOB_OPTS_HELP \
  "  --bandwidth R        limit to R MiB/s; with a suffix (K, M, G) bytes/s\n" \
  "  -p                   progress bar on a terminal (stderr)\n" \
  "  --progress=json      one JSON object per line on stdout:\n" \
  "                       {\"cur\":N,\"end\":N,\"rate\":N,\"elapsed\":S}\n" \
  "  --cache=MODE         auto (default): what the job writes bypasses the\n" \
  "                       page cache (O_DIRECT) when it moves 64 MiB or more;\n" \
  "                       direct-writes: always; buffered: never; direct:\n" \
  "                       reads too (cold data stays out of the cache)\n" \
  "  --direct             the same as --cache=direct\n" \
  "  --no-uring           use pread/pwrite instead of io_uring\n"

/* Handle a job option (c from getopt); 1 if handled, 0 if not, -1 after
 * printing a usage error. */
int job_arg (const char *cmd, struct job_args *ja, int c, const char *arg);
/* Open options from the chain options; NULL on error (last error set). */
struct qc_open_opts *job_open_opts (const struct chain_args *a);
/* SIGINT and SIGTERM abort the job run_job runs (exit 130). Install
 * before starting the job, so that a signal while it starts counts. */
void job_signals (void);
/* Run job (NULL: its start failed) to the end with the chosen progress
 * display and free it. Returns the exit status: 0, 1 (error printed) or
 * 130 (aborted by a signal). */
int run_job (struct qc_job *job, const struct job_args *ja);

int cmd_info (int argc, char **argv);
int cmd_map (int argc, char **argv);
int cmd_compare (int argc, char **argv);
int cmd_create (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_commit (int argc, char **argv);
int cmd_copy (int argc, char **argv);
int cmd_rebase (int argc, char **argv);
int cmd_pull (int argc, char **argv);

#endif
