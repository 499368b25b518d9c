# tests/malformed: tests.
