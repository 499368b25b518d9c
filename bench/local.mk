# bench: write-speed benchmark (not a test: no timing asserts). write-seq is
# built by make check so that it always compiles; run bench/write-speed.sh
# from the build directory.
check_PROGRAMS += bench/write-seq
bench_write_seq_SOURCES = bench/write-seq.c
bench_write_seq_CFLAGS = $(AM_CFLAGS)
bench_write_seq_LDADD = libqchain_internal.la
EXTRA_DIST += bench/write-speed.sh
EXTRA_DIST += bench/run

# make bench: bench/run against the tools just built (not part of check).
bench: all bench/disk-floor
	QCHAIN=$(abs_builddir)/cli/qchain $(srcdir)/bench/run $(BENCH_ARGS)
.PHONY: bench

# disk-floor: the disk's own time for a copy's bytes (bench/run's floor
# column); built by make check too, so that it always compiles.
check_PROGRAMS += bench/disk-floor
bench_disk_floor_SOURCES = bench/disk-floor.c
bench_disk_floor_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS)
bench_disk_floor_LDADD = $(URING_LIBS)
