"""Benchmarks that print their figures and the ratio against a baseline measured in the same run."""
