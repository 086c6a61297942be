"""Benchmarks: one command each, printed for people and as JSON."""
