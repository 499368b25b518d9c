# tests/unit: chain tests (backing names, chain opening, the guest view).
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test-resolve tests/unit/test-chain
TESTS += tests/unit/test-resolve tests/unit/test-chain
tests_unit_test_resolve_SOURCES = tests/unit/test-resolve.c
tests_unit_test_resolve_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_resolve_LDADD = $(TEST_UNIT_LDADD)
tests_unit_test_chain_SOURCES = tests/unit/test-chain.c
tests_unit_test_chain_CFLAGS = $(TEST_UNIT_CFLAGS)
tests_unit_test_chain_LDADD = $(TEST_UNIT_LDADD)
endif
