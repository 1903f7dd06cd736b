//! Host tests that check `aka-core` against `aka-trainer` live in `tests/tests/`.
