//! Helpers for the boot tests in `tests/tests/`.
