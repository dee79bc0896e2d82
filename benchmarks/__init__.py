"""Benchmarks of lrfinder, run by hand from the repository root (see benchmarks/README.md)."""
