//! Helpers shared by the whole-system tests in `tests/` and the benchmarks in `benches/`.
