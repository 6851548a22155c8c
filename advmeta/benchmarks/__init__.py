"""Benchmark scripts: each prints ratios measured in one run (`python -m advmeta.benchmarks.<name>`)."""
