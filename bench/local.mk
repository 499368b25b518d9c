# bench: tests.
