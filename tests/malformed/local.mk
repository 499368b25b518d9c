# tests/malformed: damaged images and hostile chains must give a clear
# one-line error (or a correct read), never a crash, hang or memory blow-up.
MALFORMED_TESTS = \
	tests/malformed/header.sh \
	tests/malformed/tables.sh \
	tests/malformed/chains.sh \
	tests/malformed/fuzz.sh \
	tests/malformed/usage.sh
TESTS += $(MALFORMED_TESTS)
EXTRA_DIST += $(MALFORMED_TESTS)
