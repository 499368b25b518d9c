# tests/unit: the library's own pieces (errors, I/O backends, locks, jobs, raw writer, batched pull/rebase planning, exported symbols).
TESTS += tests/unit/symbols.sh
EXTRA_DIST += tests/unit/symbols.sh
EXTRA_DIST += tests/unit/unit-shell.h
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-errors tests/unit/test-io tests/unit/test-throttle tests/unit/test-job tests/unit/test-raw-write
TESTS += tests/unit/test-errors tests/unit/test-io tests/unit/test-throttle tests/unit/test-job tests/unit/test-raw-write
tests_unit_test_errors_SOURCES = tests/unit/test-errors.c
tests_unit_test_errors_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_errors_LDADD = $(TEST_UNIT_LDADD) -lpthread
tests_unit_test_io_SOURCES = tests/unit/test-io.c
tests_unit_test_io_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_io_LDADD = $(TEST_UNIT_LDADD)
tests_unit_test_throttle_SOURCES = tests/unit/test-throttle.c
tests_unit_test_throttle_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_throttle_LDADD = $(TEST_UNIT_LDADD)
tests_unit_test_job_SOURCES = tests/unit/test-job.c
tests_unit_test_job_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_job_LDADD = $(TEST_UNIT_LDADD)
tests_unit_test_raw_write_SOURCES = tests/unit/test-raw-write.c
tests_unit_test_raw_write_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_raw_write_LDADD = $(TEST_UNIT_LDADD)
check_PROGRAMS += tests/unit/test-lock
TESTS += tests/unit/test-lock
tests_unit_test_lock_SOURCES = tests/unit/test-lock.c
tests_unit_test_lock_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_lock_LDADD = $(TEST_UNIT_LDADD)
check_PROGRAMS += tests/unit/test-retarget
TESTS += tests/unit/test-retarget
tests_unit_test_retarget_SOURCES = tests/unit/test-retarget.c
tests_unit_test_retarget_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_retarget_LDADD = $(TEST_UNIT_LDADD)
endif
