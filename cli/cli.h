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

int cmd_info (int argc, char **argv);
int cmd_map (int argc, char **argv);
int cmd_compare (int argc, char **argv);
int cmd_create (int argc, char **argv);
int cmd_check (int argc, char **argv);
int cmd_copy (int argc, char **argv);

#endif
