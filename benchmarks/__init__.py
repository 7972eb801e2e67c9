"""Benchmarks of the platform: `make bench` runs every `bench_*` module's `main()`."""
