"""Benchmarks: `python -m larval.bench NAME [--json]`, figures printed, never asserted."""
