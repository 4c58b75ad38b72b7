"""A refresher SIGKILLed half-way through its embedding pass resumes from the shards on
disk and publishes embeddings bit-identical to an uninterrupted pass (the 500k-block run is
``experiments/benchmarks/refresh_resume.py``, recorded in RESULTS.md)."""

import numpy as np

from realm_jax.benchmarks.refresh_resume import refresh_resume_main


def test_killed_refresher_resumes_to_identical_embeddings(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # the children
    # float32: bit-identity is the strict check (bfloat16 rounding could hide a 1-ulp change).
    record = refresh_resume_main(6000, 32, 500, 256, "float32", str(tmp_path))
    assert record["num_shards"] == 12
    assert record["identical"], record
    # Killed after its 6th shard line: at least 6 shards survived, and only the rest were redone.
    assert 6 <= record["shards_before_kill"] < 12
    assert record["shards_after_resume"] == 12 - record["shards_before_kill"]
    assert np.isfinite(record["blocks_per_s"])
