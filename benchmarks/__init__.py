"""diffgen benchmarks: speed measured against baselines in the same run (never timed unit tests)."""
