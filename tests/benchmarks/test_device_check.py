"""The accelerator check runs end to end at tiny size on the 8 simulated CPU devices (~50 s: every
hot path compiled for 8 devices; slow, so in make test-slow)."""

import json
import math

import pytest

from realm_jax.benchmarks.device_check import device_check_main


@pytest.mark.slow
def test_device_check_runs_every_check_and_ends_with_its_json_line(capsys, num_devices):
    record = device_check_main("tiny")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    printed = json.loads(last)  # json_line rounds floats to 4 decimals
    assert printed.keys() == record.keys() and printed["benchmark"] == "device_check"
    assert record["local_devices"] == num_devices and record["platform"] == "cpu"
    for key in ("encoder_seqs_per_s", "realm_steps_per_s", "mips_queries_per_s",
                "ict_steps_per_s"):
        assert math.isfinite(record[key]) and record[key] > 0, key
