"""Timing, machine description and tables shared by the benchmarks in experiments/benchmarks/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def time_interleaved(
    fns: dict[str, Callable[[], Any]], iters: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall seconds of each ``fns[name]()``, run round-robin so load hits all alike.

    On a shared machine a burst of other work then slows one round of every implementation
    instead of all runs of one, which keeps the ratios honest.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def load_average() -> float | None:
    """The 1-minute load average (other work competing for the cores), if the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory and library versions, for RESULTS.md."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem_gib = round(kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    import jax

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": mem_gib,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_devices": f"{jax.local_device_count()}x {jax.default_backend()}",
        "load_avg_1min": load_average(),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table; floats get 1-3 significant decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def json_line(record: dict[str, Any]) -> str:
    """The final line every benchmark prints: one JSON object, floats rounded to 4 decimals."""
    return json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
