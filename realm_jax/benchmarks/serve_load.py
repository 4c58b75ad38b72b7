"""A bounded load test of ``realm-jax serve`` on loopback (``experiments/benchmarks/``).

Starts the server on a free port in a subprocess, then for each number of concurrent clients
sends ``requests`` questions in all (each client asks one question after another over its own
keep-alive connection) and counts the answers: lost = sent - answered with status 200. Reports
p50 / p99 latency and questions/s per level, with batching (``max_batch``) and, for comparison,
without (``--max_batch 1``), and from the server's counters the mean batch, the model thread's
milliseconds per question and the share of the time it was busy (1.0: the model is the limit).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from realm_jax.data.questions import iter_rows

SERVING_LINE = re.compile(r"serving on (http://\S+:(\d+))/")


class ServerProcess:
    """``realm-jax serve`` in a subprocess; ``url`` once it listens. A context manager."""

    def __init__(self, workdir: str, max_batch: int, extra: tuple[str, ...] = (),
                 env: dict | None = None, timeout: float = 300.0):
        cmd = [sys.executable, "-m", "realm_jax.serve.cli", "serve", "--workdir", workdir,
               "--port", "0", "--max_batch", str(max_batch), *extra]
        env = dict(os.environ if env is None else env, XLA_FLAGS="", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if match := SERVING_LINE.search(line):
                self.url, self.port = match.group(1), int(match.group(2))
                # Keep reading its output: a full pipe would block the server's next write.
                self._reader = threading.Thread(target=self._read_rest, daemon=True)
                self._reader.start()
                return
        self.stop()
        raise RuntimeError("the server did not start:\n" + "\n".join(self.lines[-20:]))

    def _read_rest(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> list[str]:
        """Stops the server (SIGTERM, then SIGKILL after 20 s); returns all it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_reader", None) is not None:
            self._reader.join(5)
        return self.lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


async def _client(url: str, questions: list[str], count: int, offset: int, latencies: list,
                  failures: list) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=120.0) as client:
        for i in range(count):
            question = questions[(offset + i) % len(questions)]
            start = time.perf_counter()
            try:
                response = await client.post("/api/ask", json={"question": question})
                ok = response.status_code == 200 and "prediction" in response.json()
            except Exception as e:  # noqa: BLE001 - a lost request is counted, not raised
                ok, response = False, e
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                failures.append(str(getattr(response, "text", response))[:200])


async def _level(url: str, questions: list[str], clients: int, requests: int) -> dict:
    latencies, failures = [], []
    shares = [requests // clients + (c < requests % clients) for c in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(*(
        _client(url, questions, n, 7 * c, latencies, failures) for c, n in enumerate(shares)
    ))
    seconds = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: 1e3 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return {
        "clients": clients, "requests": requests, "answered": len(latencies),
        "lost": requests - len(latencies), "seconds": round(seconds, 2),
        "questions_per_s": len(latencies) / seconds,
        "p50_ms": pick(0.50) if latencies else None, "p99_ms": pick(0.99) if latencies else None,
        "mean_ms": 1e3 * statistics.fmean(latencies) if latencies else None,
        "first_failure": failures[0] if failures else None,
    }


def server_stats(url: str) -> dict:
    """The server's batching counters (``/api/info``'s ``stats``)."""
    with urllib.request.urlopen(url + "/api/info", timeout=60) as response:
        return json.load(response)["stats"]


def load_levels(url: str, questions: list[str], levels: list[int], requests: int) -> list[dict]:
    """Each level of concurrency in turn (a short warm-up of 2 x clients requests first), with
    the server's mean batch and the share of the wall time its model thread was busy."""
    out = []
    for clients in levels:
        asyncio.run(_level(url, questions, clients, 2 * clients))
        before = server_stats(url)
        result = asyncio.run(_level(url, questions, clients, requests))
        after = server_stats(url)
        done = {k: after[k] - before[k] for k in ("batches", "questions", "model_seconds")}
        result["mean_batch"] = done["questions"] / max(1, done["batches"])
        result["model_busy"] = done["model_seconds"] / result["seconds"]
        result["model_ms_per_question"] = 1e3 * done["model_seconds"] / max(1, done["questions"])
        out.append(result)
    return out


def demo_questions(path: str) -> list[str]:
    """The questions of a jsonl of ``{question, ...}`` (the facts run's own, by default)."""
    return [row["question"] for _, row in iter_rows(path)]
