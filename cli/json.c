/* A minimal JSON writer laid out the way qemu-img lays out its JSON. */
#include <config.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

void
json_init (struct json *j, FILE *f)
{
  j->f = f;
  j->depth = 0;
  j->first[0] = true;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one:
 * overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t
utf8_len (const unsigned char *p)
{
  unsigned c = p[0];
  size_t n, i;
  uint32_t cp;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, cp = c & 0x07;
  else
    return 0;
  for (i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
      || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return n;
}

/* Names come from image headers: anything that is not valid UTF-8 becomes
 * U+FFFD, byte by byte, as qemu-img does, so the output always parses. */
void
json_print_string (FILE *f, const char *s)
{
  const unsigned char *p = (const unsigned char *) s;

  fputc ('"', f);
  while (*p) {
    size_t n = utf8_len (p);

    if (n == 0) {
      fputs ("\\uFFFD", f);
      p++;
      continue;
    }
    if (n > 1) {
      fwrite (p, 1, n, f);
      p += n;
      continue;
    }
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
        fprintf (f, "\\u%04X", *p);
      else
        fputc (*p, f);
    }
    p++;
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
