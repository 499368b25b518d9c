# tests/write: tests.
