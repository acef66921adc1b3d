"""Benchmarks for issue 7: scripts that measure, never tests. `make bench` runs them all."""
