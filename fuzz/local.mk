# fuzz/: a fuzz target for the format drivers. `make fuzz/fuzz-image` builds a
# standalone runner (inputs as arguments); with clang, build fuzz-image.c with
# -fsanitize=fuzzer against libqchain_internal.la for coverage-guided fuzzing.
check_PROGRAMS += fuzz/fuzz-image
fuzz_fuzz_image_SOURCES = fuzz/fuzz-image.c fuzz/standalone.c
fuzz_fuzz_image_LDADD = libqchain_internal.la
