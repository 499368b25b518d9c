# tests/interop: tests.
