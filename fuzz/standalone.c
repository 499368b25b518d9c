/* Runs the fuzz target over files named on the command line (no libFuzzer needed). */
#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
main (int argc, char **argv)
{
  int i;

  for (i = 1; i < argc; i++) {
    FILE *f = fopen (argv[i], "rb");
    unsigned char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
      perror (argv[i]);
      return 1;
    }
    do {
      if (len == cap) {
        cap = cap ? cap * 2 : 65536;
        if (cap > (64u << 20) || (data = realloc (data, cap)) == NULL)
          break;
      }
      n = fread (data + len, 1, cap - len, f);
      len += n;
    } while (n > 0);
    fclose (f);
    LLVMFuzzerTestOneInput (data, len);
    free (data);
  }
  return 0;
}
