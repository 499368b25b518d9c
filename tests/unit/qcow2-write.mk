# tests/unit: tests of the qcow2 write path (in-memory images).
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-qcow2-write
TESTS += tests/unit/test-qcow2-write
tests_unit_test_qcow2_write_SOURCES = tests/unit/test-qcow2-write.c
tests_unit_test_qcow2_write_CFLAGS = $(TEST_UNIT_CFLAGS) $(ZLIB_CFLAGS) $(ZSTD_CFLAGS)
tests_unit_test_qcow2_write_LDADD = $(TEST_UNIT_LDADD) $(ZLIB_LIBS) $(ZSTD_LIBS)
endif
