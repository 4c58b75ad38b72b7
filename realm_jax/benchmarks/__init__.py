"""Benchmark bodies behind the thin scripts in experiments/benchmarks/."""
