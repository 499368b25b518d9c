# tests/interop: qchain info/map/compare against qemu-img 7.2 as the oracle.
INTEROP_TESTS = \
	tests/interop/v2-v3.sh \
	tests/interop/cluster-sizes.sh \
	tests/interop/compressed.sh \
	tests/interop/extended-l2.sh \
	tests/interop/zero-discard.sh \
	tests/interop/raw-base.sh \
	tests/interop/short-backing.sh \
	tests/interop/deep-chains.sh \
	tests/interop/snapshots.sh \
	tests/interop/backing-paths.sh \
	tests/interop/header-flags.sh \
	tests/interop/random-chains.sh \
	tests/interop/compare.sh
TESTS += $(INTEROP_TESTS)
EXTRA_DIST += $(INTEROP_TESTS) tests/interop/common.sh
TESTS += tests/interop/check-damaged.sh
EXTRA_DIST += tests/interop/check-damaged.sh
EXTRA_DIST += tests/interop/copy.sh
TESTS += tests/interop/locking.sh
EXTRA_DIST += tests/interop/locking.sh
TESTS += tests/interop/rebase.sh tests/interop/pull.sh
EXTRA_DIST += tests/interop/rebase.sh tests/interop/pull.sh tests/interop/retarget-kill.sh tests/interop/retarget-common.sh
TESTS += tests/interop/commit.sh
EXTRA_DIST += tests/interop/commit.sh tests/interop/commit-kill.sh tests/interop/commit-common.sh
EXTRA_DIST += tests/interop/memory.sh
TESTS += tests/interop/holes.sh
EXTRA_DIST += tests/interop/holes.sh
TESTS += tests/interop/block-device.sh
EXTRA_DIST += tests/interop/block-device.sh
# A copy driven step by step through the public API and aborted (copy.sh).
check_PROGRAMS += tests/interop/step-abort
tests_interop_step_abort_SOURCES = tests/interop/step-abort.c
tests_interop_step_abort_CPPFLAGS = -I$(top_srcdir)/lib
tests_interop_step_abort_LDADD = libqchain.la
