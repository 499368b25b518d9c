# tests/unit: tests.
