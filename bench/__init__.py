"""Benchmarks: each compares the platform with a baseline measured side by side in the same run."""
