import json

import pytest

from realm_jax.benchmarks.common import format_table, json_line, time_interleaved


def test_time_interleaved_runs_round_robin():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = time_interleaved(fns, iters=3, warmup=1)
    assert calls == ["a", "b"] * 4  # 1 warm-up round + 3 timed rounds, alternating
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    with pytest.raises(ValueError, match="iters must be >= 1"):
        time_interleaved(fns, iters=0)


def test_table_and_json_line():
    table = format_table(["name", "x"], [["jax", 1.23456], ["torch", 123.456]])
    assert table.splitlines() == [
        "| name | x |",
        "|---|---|",
        "| jax | 1.235 |",
        "| torch | 123.5 |",
    ]
    assert json.loads(json_line({"benchmark": "b", "ratio": 1.234567})) == {
        "benchmark": "b",
        "ratio": 1.2346,
    }
