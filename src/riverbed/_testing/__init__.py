"""Internal helpers for riverbed's own tests and benchmarks (servers to test against)."""
