"""A run's logged metrics (``metrics.jsonl``), as the reproduction's plan and tables read them."""

from __future__ import annotations

import json
import os

from realm_jax.run.files import METRICS_FILE


def read_metrics(workdir: str, split: str) -> list[dict]:
    """The ``split`` ("train" / "eval") records of a run's metrics.jsonl, in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; did the run start?")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    # A resumed run logs steps after its checkpoint again: the last record of a step wins.
    by_step = {r["step"]: r for r in records if r["split"] == split}
    return [by_step[s] for s in sorted(by_step)]


def refresh_lag(realm_workdir: str) -> int:
    """Steps an index lagged behind training at most (window means) in a REALM run; >= 1."""
    lags = [r.get("staleness", 0.0) for r in read_metrics(realm_workdir, "train")]
    return max(1, round(max(lags, default=1.0)))
