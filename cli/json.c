/* A minimal JSON writer laid out the way qemu-img lays out its JSON. */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "cli.h"

void
json_init (struct json *j, FILE *f)
{
  j->f = f;
  j->depth = 0;
  j->first[0] = true;
}

void
json_print_string (FILE *f, const char *s)
{
  const unsigned char *p = (const unsigned char *) s;

  fputc ('"', f);
  for (; *p; p++) {
    switch (*p) {
    case '"': fputs ("\\\"", f); break;
    case '\\': fputs ("\\\\", f); break;
    case '\n': fputs ("\\n", f); break;
    case '\r': fputs ("\\r", f); break;
    case '\t': fputs ("\\t", f); break;
    case '\b': fputs ("\\b", f); break;
    case '\f': fputs ("\\f", f); break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fprintf (f, "\\u%04x", *p);
      else
        fputc (*p, f);
    }
  }
  fputc ('"', f);
}

/* Separator, newline and indentation before a member, then its key. */
static void
member (struct json *j, const char *key)
{
  if (j->depth > 0) {
    if (!j->first[j->depth])
      fputc (',', j->f);
    fputc ('\n', j->f);
    fprintf (j->f, "%*s", 4 * j->depth, "");
  }
  j->first[j->depth] = false;
  if (key) {
    json_print_string (j->f, key);
    fputs (": ", j->f);
  }
}

static void
open_container (struct json *j, const char *key, char c)
{
  member (j, key);
  fputc (c, j->f);
  if (j->depth + 1 < (int) (sizeof j->first / sizeof j->first[0]))
    j->depth++;
  j->first[j->depth] = true;
}

static void
close_container (struct json *j, char c)
{
  bool empty = j->first[j->depth];

  j->depth--;
  if (!empty) {
    fputc ('\n', j->f);
    fprintf (j->f, "%*s", 4 * j->depth, "");
  }
  fputc (c, j->f);
}

void json_begin_object (struct json *j, const char *key) { open_container (j, key, '{'); }
void json_end_object (struct json *j) { close_container (j, '}'); }
void json_begin_array (struct json *j, const char *key) { open_container (j, key, '['); }
void json_end_array (struct json *j) { close_container (j, ']'); }

void
json_string (struct json *j, const char *key, const char *v)
{
  member (j, key);
  json_print_string (j->f, v);
}

void
json_u64 (struct json *j, const char *key, uint64_t v)
{
  member (j, key);
  fprintf (j->f, "%" PRIu64, v);
}

void
json_bool (struct json *j, const char *key, bool v)
{
  member (j, key);
  fputs (v ? "true" : "false", j->f);
}

void
json_finish (struct json *j)
{
  fputc ('\n', j->f);
}
