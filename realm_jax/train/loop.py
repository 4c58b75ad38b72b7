"""The training loop every stage shares: resume, steps, metrics, evals, checkpoints, clean stops.

``run_loop`` owns the side effects (lm1b's ``train_and_evaluate`` shape): it restores the newest
checkpoint of ``<workdir>/checkpoints`` if there is one (an older one, with a warning, when the
newest is damaged), runs the pmapped step on the stage's batches, writes metrics (TensorBoard
through clu, plus ``metrics.jsonl``) from process 0, saves orbax checkpoints every
``checkpoint_every_steps`` (keeping ``keep_checkpoints``), evaluates every ``eval_every_steps``
and at the end, and shows progress with an ETA. A non-finite loss stops the run with
``NonFiniteLossError`` before anything is saved from it; Ctrl-C saves the last finished step,
waits for the write and re-raises.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from clu import metric_writers, periodic_actions
from ml_collections import ConfigDict

from realm_jax.progress import progress_bar
from realm_jax.train.checkpoint import Checkpoints, EmbedderSpec
from realm_jax.train.model_setup import CHECKPOINT_DIR, CONFIG_FILE
from realm_jax.train.parallel import replicate, shard
from realm_jax.train.state import TrainState

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN / Inf loss or parameters; the message names the step to resume."""


@dataclasses.dataclass
class Stage:
    """What a stage plugs into the loop.

    batch_at(step, params) -> this process's numpy batch of ``step`` (params: device-0 copy);
    evaluate(step, params) -> scalar metrics; on_start(step, params) runs once before the first
    step (e.g. to build the first index); on_end(step, params) after the last.
    """

    name: str
    state: TrainState  # step-0 state, host side: the template a checkpoint restores into
    train_step: Callable  # pmapped (state, batch, rng) -> (state, metrics)
    batch_at: Callable[[int, dict], dict]
    evaluate: Callable[[int, dict], dict] | None = None
    on_start: Callable[[int, dict], None] | None = None
    on_end: Callable[[int, dict], None] | None = None
    embedder_spec: EmbedderSpec | None = None
    # Host-side scalars of the step just taken, logged with its metrics (e.g. index staleness).
    step_extras: Callable[[int], dict] | None = None
    save_initial: bool = False  # checkpoint step 0 before training (a refresher indexes it)


def save_config(config: ConfigDict, workdir: str) -> None:
    """Writes the run's config beside its checkpoints (what predict.py rebuilds the model from)."""
    from realm_jax.data.jsonl import atomic_write

    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() != 0:  # one writer on a shared filesystem
        return
    with atomic_write(os.path.join(workdir, CONFIG_FILE)) as f:
        f.write(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def all_finite(tree) -> bool:
    """Whether every leaf is free of NaN / Inf (one compiled reduction per tree structure)."""
    return bool(_all_finite(tree))


_first = jax.jit(lambda tree: jax.tree.map(lambda x: x[0], tree))


def first_device(tree):
    """Device 0's copy of a replicated pytree, on device 0 (one compile per tree structure)."""
    return _first(jax.tree.map(lambda x: x.addressable_shards[0].data, tree))


def host_metrics(metrics) -> dict:
    """The first device's copy of pmapped metrics as numpy scalars (all devices hold the same)."""
    return {k: np.asarray(v)[0] for k, v in metrics.items()}


class MetricsLog:
    """Scalars to clu's writer (TensorBoard + log) and ``metrics.jsonl``; process 0 writes."""

    def __init__(self, workdir: str):
        self.primary = jax.process_index() == 0
        self.writer = metric_writers.create_default_writer(workdir, just_logging=not self.primary)
        self.path = os.path.join(workdir, METRICS_FILE)

    def write(self, step: int, split: str, scalars: dict) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        self.writer.write_scalars(step, {f"{split}/{k}": v for k, v in values.items()})
        if self.primary:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, "split": split, **values}) + "\n")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _mean_metrics(window: list[dict]) -> dict:
    """Means over a window of per-step metrics (counts summed)."""
    out = {}
    for key in window[0]:
        values = np.array([float(m[key]) for m in window])
        out[key] = values.sum() if key.startswith("num_") else values.mean()
    return out


def run_loop(config: ConfigDict, workdir: str, stage: Stage) -> dict:
    """Trains ``stage`` to ``config.num_train_steps``; returns the last evaluation's metrics."""
    c = config
    metrics_log = MetricsLog(workdir)
    checkpoints = Checkpoints(
        os.path.join(workdir, CHECKPOINT_DIR),
        max_to_keep=c.keep_checkpoints,
        embedder_spec=stage.embedder_spec,
    )
    # The newest checkpoint that restores (a damaged newer one is set aside with a warning).
    start, state = checkpoints.restore_latest_good(stage.state)
    if start is not None:
        log.info("%s: resumed from checkpoint %d", stage.name, start)
    else:
        start, state = 0, stage.state
        if stage.save_initial:
            checkpoints.save(0, state)
            checkpoints.wait()
    last_saved = start
    host_params = state.params
    replicated = replicate(state)
    # Dropout keys fold in the step and device (steps.py), so one key serves the whole run.
    rng = replicate(jax.random.PRNGKey(c.seed + 1))
    report = periodic_actions.ReportProgress(num_train_steps=c.num_train_steps, every_secs=60)
    eval_metrics: dict = {}
    step = start

    def save(at: int) -> None:
        nonlocal last_saved
        if at == last_saved:
            return
        if not all_finite(replicated.params):
            raise NonFiniteLossError(
                f"{stage.name}: non-finite parameters at step {at}; not saved, "
                f"the last good checkpoint is step {last_saved}"
            )
        checkpoints.save(at, first_device(replicated))
        last_saved = at

    def evaluate(at: int, params: dict) -> dict:
        if stage.evaluate is None:
            return {}
        t0 = time.perf_counter()
        metrics = stage.evaluate(at, params)
        metrics_log.write(at, "eval", metrics)
        log.info("%s eval at step %d (%.1f s): %s", stage.name, at, time.perf_counter() - t0,
                 json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))  # fmt: skip
        return metrics

    primary = jax.process_index() == 0  # one progress bar, from process 0
    bar = progress_bar(total=c.num_train_steps, desc=stage.name, unit="step",
                       enabled=c.progress and primary)  # fmt: skip
    bar.update(start)
    try:
        if stage.on_start is not None:
            stage.on_start(start, host_params)
        if c.eval_at_start and start == 0:
            eval_metrics = evaluate(0, host_params)
        window: list[dict] = []
        window_start = time.perf_counter()
        while step < c.num_train_steps:
            batch = stage.batch_at(step, host_params)
            replicated, metrics = stage.train_step(replicated, shard(batch), rng)
            metrics = host_metrics(metrics)
            if stage.step_extras is not None:
                metrics |= stage.step_extras(step)
            step += 1
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"{stage.name}: loss is {loss} at step {step}; stopping, "
                    f"the last good checkpoint is step {last_saved}"
                )
            host_params = first_device(replicated.params)
            window.append(metrics)
            last = step == c.num_train_steps
            if step % c.log_every_steps == 0 or last:
                seconds, window_start = time.perf_counter() - window_start, time.perf_counter()
                rate = {"seconds_per_step": seconds / len(window)}  # batch building included
                metrics_log.write(step, "train", _mean_metrics(window) | rate)
                window = []
            if step % c.checkpoint_every_steps == 0 or last:
                save(step)
            if last and stage.on_end is not None:
                checkpoints.wait()
                stage.on_end(step, host_params)
            if (c.eval_every_steps and step % c.eval_every_steps == 0) or last:
                eval_metrics = evaluate(step, host_params)
            bar.update(1)
            if c.progress:
                report(step)
        if start >= c.num_train_steps:  # a finished run started again: report, train nothing
            eval_metrics = evaluate(start, host_params)
    except KeyboardInterrupt:
        log.warning("%s: interrupted at step %d; saving it", stage.name, step)
        try:
            save(step)
        except Exception as e:  # a step cut short may have consumed the state's buffers
            log.warning("could not save step %d (%s); keeping checkpoint %d", step, e, last_saved)
        raise
    finally:
        bar.close()
        checkpoints.wait()
        checkpoints.close()
        metrics_log.close()
    return eval_metrics
