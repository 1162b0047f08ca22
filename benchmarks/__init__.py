"""Benchmarks for the job router (see benchmarks/README.md)."""
