"""Benchmarks for riverbed, run on demand (not timed tests)."""
