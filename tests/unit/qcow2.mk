# tests/unit: tests of the qcow2 driver (header parsing, L1/L2 decoding, status/read).
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-qcow2-header tests/unit/test-l2-entry
TESTS += tests/unit/test-qcow2-header tests/unit/test-l2-entry
tests_unit_test_qcow2_header_SOURCES = tests/unit/test-qcow2-header.c
tests_unit_test_qcow2_header_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_qcow2_header_LDADD = $(TEST_UNIT_LDADD)
tests_unit_test_l2_entry_SOURCES = tests/unit/test-l2-entry.c
tests_unit_test_l2_entry_CFLAGS = $(TEST_UNIT_CFLAGS) $(ZLIB_CFLAGS) $(ZSTD_CFLAGS)
tests_unit_test_l2_entry_LDADD = $(TEST_UNIT_LDADD) $(ZLIB_LIBS) $(ZSTD_LIBS)
endif
