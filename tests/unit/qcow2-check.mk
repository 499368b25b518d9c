# tests/unit: qcow2 create and check (damaged images, repair).
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-qcow2-check
TESTS += tests/unit/test-qcow2-check
tests_unit_test_qcow2_check_SOURCES = tests/unit/test-qcow2-check.c
tests_unit_test_qcow2_check_CFLAGS = $(TEST_UNIT_CFLAGS) $(ZLIB_CFLAGS) $(ZSTD_CFLAGS)
tests_unit_test_qcow2_check_LDADD = $(TEST_UNIT_LDADD) $(ZLIB_LIBS) $(ZSTD_LIBS)
endif
