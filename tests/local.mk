# tests/: unit tests (cmocka) and interop tests against qemu-img.
TEST_EXTENSIONS = .sh
SH_LOG_COMPILER = $(SHELL)
AM_TESTS_ENVIRONMENT = \
	QCHAIN=$(abs_top_builddir)/cli/qchain; export QCHAIN; \
	QEMU_IMG="$(QEMU_IMG)"; export QEMU_IMG; \
	QEMU_IO="$(QEMU_IO)"; export QEMU_IO; \
	SANITIZERS=$(enable_sanitizers); export SANITIZERS; \
	srcdir=$(abs_top_srcdir)/tests; export srcdir; \
	builddir=$(abs_top_builddir)/tests; export builddir;

# The slowest scripts start first (make -j runs TESTS in order), so that a
# parallel check does not end on one of them running alone; the other
# local.mk files list the rest and ship all of them.
TESTS += \
	tests/interop/commit-kill.sh \
	tests/write/crash-sim.sh \
	tests/interop/memory.sh \
	tests/interop/copy.sh \
	tests/interop/retarget-kill.sh

TEST_UNIT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
TEST_UNIT_LDADD = libqchain_internal.la $(CMOCKA_LIBS)

include tests/unit/lib.mk
include tests/unit/qcow2.mk
include tests/unit/chain.mk
include tests/unit/qcow2-write.mk
include tests/unit/qcow2-check.mk
include tests/unit/engine.mk
include tests/write/local.mk
include tests/interop/local.mk
include tests/malformed/local.mk
