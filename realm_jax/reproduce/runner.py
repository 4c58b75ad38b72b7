"""Runs a table's plan: each stage once, each evaluation once, resumable.

Each training run, test evaluation and zero-shot retrieval runs in a fresh child process
(``in_child``; ``ISOLATE = False`` keeps them in this one), so what one leaves behind (compiled
programs, models, indexes, allocator arenas) goes back to the OS before the next starts and the
job's peak memory is its largest step's, not their sum.

A finished run leaves ``<root>/<name>/reproduce.json`` (its final metrics, wall time and peak
memory) and is skipped when the job is started again; an unfinished one resumes from its last
checkpoint (the training loop does that). Test-set scores are cached under ``<root>/eval/``,
with each question's outcome beside them under ``<root>/per_question/`` (what the tables'
paired intervals resample).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import multiprocessing
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from absl import logging as absl_logging
from ml_collections import ConfigDict

from realm_jax.errors import ConfigError
from realm_jax.openqa.predict import evaluate_run
from realm_jax.reproduce.plan import Row, Run, resolve
from realm_jax.run.config import load_config
from realm_jax.train import ict, mlm, openqa, realm
from realm_jax.train.launch import quiet_logs
from realm_jax.utils.jsonl import atomic_write

DONE_FILE = "reproduce.json"
PER_QUESTION_DIR = "per_question"
ISOLATE = True  # each run / evaluation in its own process (experiments/reproduce.py's flag)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _with_peak(fn: Callable, *args) -> tuple[Any, float]:
    absl_logging.use_absl_handler()  # as absl's app.run does in the parent
    quiet_logs()
    return fn(*args), peak_rss_gib()


def in_child(fn: Callable, *args) -> tuple[Any, float]:
    """``(fn(*args), peak resident GiB of the process that ran it)``, run in a freshly spawned
    process when ``ISOLATE`` (``fn`` and the arguments must pickle; its exceptions are raised
    here), else in this one. Ctrl-C reaches the child too, which saves and stops as a run in
    the foreground would; this process waits for it."""
    if not ISOLATE:
        return fn(*args), peak_rss_gib()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_with_peak, fn, *args).result()


def reference_run(dataset: str) -> str:
    """The ORQA run of Table 1 on ``dataset``: every row's reference for paired differences."""
    return f"openqa_orqa_{dataset.removeprefix('mini_')}"


def set_field(config: ConfigDict, dotted: str, value) -> None:
    """``config.a.b = value`` for ``dotted`` = "a.b", refusing fields the config lacks."""
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    if leaf not in node:
        raise ConfigError(f"override {dotted}: no such config field")
    setattr(node, leaf, value)


def run_config(run: Run, root: str, configs_dir: str, overrides: dict | None = None):
    config = load_config(configs_dir, run.config)
    for dotted, value in {**run.overrides, **(overrides or {})}.items():
        set_field(config, dotted, resolve(value, root))
    return config


TRAINERS = {"ict": ict.train_and_evaluate, "mlm": mlm.train_and_evaluate,
            "realm": realm.train_and_evaluate, "openqa": openqa.train_and_evaluate}


def _read(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_records(path: str) -> list[dict] | None:
    """The records of a jsonl file written by ``write_jsonl`` (None: no such file)."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as f:
        f.write(json.dumps(record, indent=1) + "\n")


def _clock(start: float) -> str:
    minutes, seconds = divmod(int(time.perf_counter() - start), 60)
    return f"{minutes}:{seconds:02d}"


def run_all(
    runs: list[Run], root: str, configs_dir: str, overrides: dict | None = None
) -> dict[str, float]:
    """Trains every run not yet finished under ``root``; returns each run's wall seconds.

    ``overrides`` (dotted field -> value) apply to every run, e.g. fewer steps for a smoke test.
    """
    os.makedirs(root, exist_ok=True)
    start, seconds = time.perf_counter(), {}
    for i, run in enumerate(runs, 1):
        workdir = os.path.join(root, run.name)
        done = _read(os.path.join(workdir, DONE_FILE))
        if done is not None:
            print(f"[{i}/{len(runs)}] {run.name}: done before ({done['seconds']:.0f} s)")
            seconds[run.name] = done["seconds"]
            continue
        config = run_config(run, root, configs_dir, overrides)
        print(f"[{i}/{len(runs)} at {_clock(start)}] {run.name}: {run.config} "
              f"{json.dumps({k: resolve(v, root) for k, v in run.overrides.items()})}",
              flush=True)
        t0 = time.perf_counter()
        metrics, peak = in_child(TRAINERS[run.stage], config, workdir)
        seconds[run.name] = time.perf_counter() - t0
        record = {"config": run.config, "seconds": seconds[run.name],
                  "peak_rss_gib": round(peak, 2),
                  "final_eval": {k: float(v) for k, v in metrics.items()}}
        _write(os.path.join(workdir, DONE_FILE), record)
    return seconds


def evaluate(
    root: str, name: str, dataset: str, split: str = "test", max_questions: int | None = None
) -> dict:
    """``{exact_match, recall_at_5, n, seconds, per_question}`` of run ``name`` on ``dataset``.

    Cached: ``<root>/eval/<name>.<dataset>.<split>[-sample<n>].json`` holds the scores and
    ``<root>/per_question/`` the same name with ``.jsonl`` one record per question (see
    ``openqa.answerer.per_question_scores``); ``per_question`` is that file's path under root.
    """

    stem = f"{name}.{dataset}.{split}" + (f"-sample{max_questions}" if max_questions else "")
    cache = os.path.join(root, "eval", f"{stem}.json")
    per_question = os.path.join(PER_QUESTION_DIR, f"{stem}.jsonl")
    scores = _read(cache)
    if scores is None or not os.path.isfile(os.path.join(root, per_question)):
        print(f"evaluating {name} on {dataset} {split}", flush=True)
        os.makedirs(os.path.join(root, PER_QUESTION_DIR), exist_ok=True)
        t0 = time.perf_counter()
        scores, _ = in_child(functools.partial(
            evaluate_run, os.path.join(root, name), dataset, split, max_questions=max_questions,
            per_question_output=os.path.join(root, per_question)))
        scores["seconds"] = time.perf_counter() - t0
        _write(cache, scores)  # last: the cache marks both files finished
    return scores | {"per_question": per_question}


def evaluate_rows(
    rows: list[Row], root: str, split: str = "test", max_questions: int | None = None
) -> dict[str, dict[str, dict]]:
    """``{label: {dataset: evaluate(...)}}`` of each row's runs."""
    scores = lambda runs: {d: evaluate(root, name, d, split, max_questions) for d, name in runs}
    return {row.label: scores(row.runs.items()) for row in rows}


def evaluate_references(
    datasets, root: str, split: str = "test", max_questions: int | None = None
) -> dict[str, dict | None]:
    """``{dataset: evaluate(...)}`` of the ORQA reference run of each dataset, or None for a
    dataset whose reference has not finished training under ``root`` (cached as any run)."""
    out = {}
    for d in dict.fromkeys(datasets):
        name = reference_run(d)
        done = os.path.isfile(os.path.join(root, name, DONE_FILE))
        out[d] = evaluate(root, name, d, split, max_questions) if done else None
    return out
