"""What every stage's ``train_and_evaluate`` does around its step: resume, log, checkpoint, stop.

A stage module (``ict.py``, ``mlm.py``, ``realm.py``, ``openqa.py``) writes its own loop, as
flax's lm1b ``train.py`` does, and hands the side effects to ``TrainLoop``::

    with TrainLoop(config, workdir, "ict", create_state(config, params), spec) as loop:
        loop.evaluate_at_start(evaluate)
        for step in loop.steps():
            state, metrics = p_train_step(loop.state, shard(batches(step)), loop.rng)
            loop.record(state, metrics)
            loop.evaluate_if_due(evaluate)
        return loop.final_metrics(evaluate)

``TrainLoop`` restores the newest checkpoint of ``<workdir>/checkpoints`` that restores (an older
one, with a warning, when the newest is damaged), writes metrics (TensorBoard through clu, plus
``metrics.jsonl``) from process 0, saves orbax checkpoints every ``checkpoint_every_steps``
(keeping ``keep_checkpoints``) and at the last step, evaluates every ``eval_every_steps`` and at
the end, and shows progress with an ETA. A non-finite loss stops the run with
``NonFiniteLossError`` before anything is saved from it; Ctrl-C saves the last finished step,
waits for the write and re-raises.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from clu import metric_writers, periodic_actions
from ml_collections import ConfigDict

from realm_jax.errors import NonFiniteLossError
from realm_jax.models.realm import EmbedderSpec
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.run.files import RunDir
from realm_jax.run.state import TrainState
from realm_jax.utils.devices import replicate, shard
from realm_jax.utils.progress import progress_bar

log = logging.getLogger(__name__)

Evaluate = Callable[[int, dict], dict]  # (step, host params) -> scalar metrics


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


def mean_eval(p_eval_step: Callable, params: dict, batches) -> dict:
    """Held-out metrics over ``batches``, each batch's global means averaged."""
    replicated = replicate(params)
    results = [host_metrics(p_eval_step(replicated, shard(b))) for b in batches]
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


class MetricsLog:
    """Scalars to clu's writer (TensorBoard + log) and ``metrics.jsonl``; process 0 writes."""

    def __init__(self, workdir: str):
        self.primary = jax.process_index() == 0
        self.writer = metric_writers.create_default_writer(workdir, just_logging=not self.primary)
        self.path = RunDir(workdir).metrics

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


class TrainLoop:
    """One stage's run to ``config.num_train_steps``: see the module docstring.

    ``state``: the step-0 state on the host (the template a checkpoint restores into);
    ``embedder_spec``: written beside the checkpoints for the refresher (None: no retriever);
    ``save_initial``: checkpoint step 0 before training (an asynchronous refresher indexes it).
    After ``__enter__``: ``start`` (the first step to run), ``step`` (steps done), ``params`` (the
    host's device-0 copy of the current params) and ``state`` (replicated over local devices).
    """

    def __init__(
        self, config: ConfigDict, workdir: str, name: str, state: TrainState,
        embedder_spec: EmbedderSpec | None = None, save_initial: bool = False,
    ):
        self.config, self.name = config, name
        self.metrics_log = MetricsLog(workdir)
        self.checkpoints = Checkpoints(
            RunDir(workdir).checkpoints,
            max_to_keep=config.keep_checkpoints,
            embedder_spec=embedder_spec,
        )
        try:
            start, restored = self.checkpoints.restore_latest_good(state)
        except BaseException:
            self.checkpoints.close()
            self.metrics_log.close()
            raise
        if start is not None:
            log.info("%s: resumed from checkpoint %d", name, start)
            state = restored
        else:
            start = 0
            if save_initial:
                self.checkpoints.save(0, state)
                self.checkpoints.wait()
        self.start = self.step = self.last_saved = start
        self.params = state.params
        self.state = replicate(state)
        # Dropout keys fold in the step and device (steps.py), so one key serves the whole run.
        self.rng = replicate(jax.random.PRNGKey(config.seed + 1))
        self.eval_metrics: dict = {}
        self._window: list[dict] = []
        self._window_start = time.perf_counter()
        self._report = periodic_actions.ReportProgress(
            num_train_steps=config.num_train_steps, every_secs=60
        )
        primary = jax.process_index() == 0  # one progress bar, from process 0
        self._bar = progress_bar(total=config.num_train_steps, desc=name, unit="step",
                                 enabled=config.progress and primary)
        self._bar.update(start)

    def __enter__(self) -> TrainLoop:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is KeyboardInterrupt:
                log.warning("%s: interrupted at step %d; saving it", self.name, self.step)
                try:
                    self.save(self.step)
                except Exception as e:  # a step cut short may have consumed the state's buffers
                    log.warning("could not save step %d (%s); keeping checkpoint %d",
                                self.step, e, self.last_saved)
        finally:
            self._close()

    def _close(self) -> None:
        self._bar.close()
        self.checkpoints.wait()
        self.checkpoints.close()
        self.metrics_log.close()

    @property
    def done(self) -> bool:
        """Whether the last step has been taken."""
        return self.step >= self.config.num_train_steps

    def steps(self) -> Iterator[int]:
        """The steps still to run, from ``start``; each is recorded with ``record``."""
        while not self.done:
            yield self.step
            self._bar.update(1)
            if self.config.progress:
                self._report(self.step)

    def record(self, state, metrics: dict, extras: dict | None = None) -> dict:
        """Takes the state and pmapped metrics of the step just run; logs the metrics (with the
        host-side ``extras``) and checkpoints when due. Returns the step's host metrics."""
        self.state = state
        metrics = host_metrics(metrics) | (extras or {})
        self.step += 1
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"{self.name}: loss is {loss} at step {self.step}; stopping, "
                f"the last good checkpoint is step {self.last_saved}"
            )
        self.params = first_device(self.state.params)
        self._window.append(metrics)
        c = self.config
        if self.step % c.log_every_steps == 0 or self.done:
            now = time.perf_counter()
            rate = {"seconds_per_step": (now - self._window_start) / len(self._window)}
            self.metrics_log.write(self.step, "train", _mean_metrics(self._window) | rate)
            self._window, self._window_start = [], now
        if self.step % c.checkpoint_every_steps == 0 or self.done:
            self.save(self.step)
        if self.done:
            self.checkpoints.wait()  # what runs after the last step may read its checkpoint
        return metrics

    def save(self, step: int) -> None:
        if step == self.last_saved:
            return
        if not all_finite(self.state.params):
            raise NonFiniteLossError(
                f"{self.name}: non-finite parameters at step {step}; not saved, "
                f"the last good checkpoint is step {self.last_saved}"
            )
        self.checkpoints.save(step, first_device(self.state))
        self.last_saved = step

    def evaluate(self, evaluate: Evaluate | None) -> dict:
        """Runs ``evaluate(step, params)`` now and logs it (``{}`` without one)."""
        if evaluate is None:
            return {}
        t0 = time.perf_counter()
        metrics = evaluate(self.step, self.params)
        self.metrics_log.write(self.step, "eval", metrics)
        log.info("%s eval at step %d (%.1f s): %s", self.name, self.step,
                 time.perf_counter() - t0,
                 json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))
        self.eval_metrics = metrics
        return metrics

    def evaluate_at_start(self, evaluate: Evaluate | None) -> None:
        """The step-0 evaluation ``eval_at_start`` asks for (not on a resume)."""
        if self.config.eval_at_start and self.start == 0:
            self.evaluate(evaluate)

    def evaluate_if_due(self, evaluate: Evaluate | None) -> None:
        """Evaluates every ``eval_every_steps`` and after the last step."""
        every = self.config.eval_every_steps
        if (every and self.step % every == 0) or self.done:
            self.evaluate(evaluate)

    def final_metrics(self, evaluate: Evaluate | None) -> dict:
        """The last evaluation's metrics; a finished run started again evaluates once, trains
        nothing."""
        if self.start >= self.config.num_train_steps:
            return self.evaluate(evaluate)
        return self.eval_metrics
