# tests/unit: the I/O engine, both backends.
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-engine
TESTS += tests/unit/test-engine
tests_unit_test_engine_SOURCES = tests/unit/test-engine.c
tests_unit_test_engine_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_engine_LDADD = $(TEST_UNIT_LDADD)
endif
