# tests/write: the write path against qemu-img as the oracle: random writes
# against an in-memory model, crash simulation, images with internal
# snapshots.
WRITE_PROGS = \
	tests/write/random-write \
	tests/write/crash-sim
check_PROGRAMS += $(WRITE_PROGS)

tests_write_random_write_SOURCES = tests/write/random-write.c tests/write/wtest.h
tests_write_random_write_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_write_random_write_LDADD = libqchain_internal.la

tests_write_crash_sim_SOURCES = tests/write/crash-sim.c tests/write/wtest.h
tests_write_crash_sim_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_write_crash_sim_LDADD = libqchain_internal.la

WRITE_TESTS = \
	tests/write/random-write.sh \
	tests/write/crash-sim.sh \
	tests/write/snapshots.sh
TESTS += tests/write/random-write.sh tests/write/snapshots.sh
EXTRA_DIST += $(WRITE_TESTS)
