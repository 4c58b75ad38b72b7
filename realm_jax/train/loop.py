"""What every stage's ``train_and_evaluate`` does around its step: resume, log, checkpoint, stop.

A stage module (``ict.py``, ``mlm.py``, ``realm.py``, ``openqa.py``) writes its own loop, as
flax's lm1b ``train.py`` does, and hands the side effects to ``TrainLoop``::

    with TrainLoop(config, workdir, "ict", create_state(config, params), spec) as loop:
        loop.evaluate_at_start(evaluate)
        for step, batch in loop.prefetch(batches):   # or loop.steps(), building batches inline
            state, metrics = p_train_step(loop.state, batch, loop.rng)
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

On an accelerator the host stays ahead of the device: a step's metrics stay on device until its
log window closes (``log_every_steps``, a checkpoint, the end), when one transfer fetches them;
the host waits only for the step before the one just dispatched (one step in flight); the
parameters come to the host only when something asks for ``loop.params``; ``prefetch`` builds
the next batch on a thread while the current step runs. ``profile_steps`` > 0 records a
``jax.profiler`` trace of that many steps (after the first few) into the workdir for TensorBoard.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from realm_jax.errors import NonFiniteLossError
from realm_jax.models.realm import EmbedderSpec
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.run.files import RunDir
from realm_jax.run.state import TrainState
from realm_jax.utils.devices import put_sharded, replicate, shard
from realm_jax.utils.memory import release_free_memory
from realm_jax.utils.progress import progress_bar
from realm_jax.utils.tensorboard import create_writer, periodic_actions

log = logging.getLogger(__name__)

Evaluate = Callable[[int, dict], dict]  # (step, host params) -> scalar metrics


def primary_process() -> bool:
    """Whether this is process 0, the one that writes metrics and shows progress."""
    return jax.process_index() == 0


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
        self.primary = primary_process()
        self.writer = create_writer(workdir, just_logging=not self.primary)
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
    device-0 copy of the current params, made when asked for) and ``state`` (replicated over
    local devices).
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
        self._params = state.params
        self.state = replicate(state)
        # Dropout keys fold in the step and device (steps.py), so one key serves the whole run.
        self.rng = replicate(jax.random.PRNGKey(config.seed + 1))
        self.eval_metrics: dict = {}
        self._pending: list[tuple[int, dict, dict]] = []  # (step, device metrics, host extras)
        self._window: list[dict] = []  # fetched, not yet written
        self._window_start = time.perf_counter()
        self._report = periodic_actions.ReportProgress(
            num_train_steps=config.num_train_steps, every_secs=60
        )
        profile_steps = config.get("profile_steps", 0)
        self._profile = periodic_actions.Profile(
            logdir=workdir, num_profile_steps=profile_steps, first_profile=start + 5,
            every_secs=None) if profile_steps and primary_process() else None
        primary = primary_process()  # one progress bar, from process 0
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
                    self._fetch()
                    self._write_window()
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

    @property
    def params(self):
        """Device 0's copy of the current parameters (copied once per step, when first asked)."""
        if self._params is None:
            self._params = first_device(self.state.params)
        return self._params

    def steps(self) -> Iterator[int]:
        """The steps still to run, from ``start``; each is recorded with ``record``."""
        while not self.done:
            yield self.step
            self._bar.update(1)
            if self.config.progress:
                self._report(self.step)
            if self._profile is not None:
                self._profile(self.step)

    def prefetch(self, make_batch: Callable[[int], dict]) -> Iterator[tuple[int, dict]]:
        """``(step, batch on the devices)`` for the steps still to run, the next step's batch
        built (``make_batch(step)``, global batch) and transferred on a thread while this step
        runs. Only for batches that do not depend on the parameters being trained."""
        build = lambda step: put_sharded(make_batch(step))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
            upcoming = pool.submit(build, self.step)
            for step in self.steps():
                batch = upcoming.result()
                if step + 1 < self.config.num_train_steps:
                    upcoming = pool.submit(build, step + 1)
                yield step, batch

    def record(self, state, metrics: dict, extras: dict | None = None) -> None:
        """Takes the state and pmapped metrics of the step just run (and host-side ``extras``);
        logs and checkpoints when due. The metrics stay on device until then."""
        if self._pending:  # one step in flight at most: wait for the previous one, fetch nothing
            jax.block_until_ready(self._pending[-1][1])
            release_free_memory()  # what the compile and the last step freed, before the next
        self.state, self._params = state, None
        self.step += 1
        self._pending.append((self.step, metrics, extras or {}))
        c = self.config
        log_due = self.step % c.log_every_steps == 0 or self.done
        save_due = self.step % c.checkpoint_every_steps == 0 or self.done
        if log_due or save_due:
            self._fetch()  # a non-finite loss stops the run here, before it is saved
        if log_due:
            self._write_window()
        if save_due:
            self.save(self.step)
        if self.done:
            self.checkpoints.wait()  # what runs after the last step may read its checkpoint

    def _fetch(self) -> None:
        """Moves the pending steps' metrics to the host in one transfer; a non-finite loss among
        them raises ``NonFiniteLossError`` naming its step."""
        values = jax.device_get([m for _, m, _ in self._pending])
        for (step, _, extras), device_values in zip(self._pending, values, strict=True):
            row = {k: np.asarray(v)[0] for k, v in device_values.items()} | extras
            loss = float(row["loss"])
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"{self.name}: loss is {loss} at step {step}; stopping, "
                    f"the last good checkpoint is step {self.last_saved}"
                )
            self._window.append(row)
        self._pending = []

    def _write_window(self) -> None:
        if not self._window:
            return
        now = time.perf_counter()
        rate = {"seconds_per_step": (now - self._window_start) / len(self._window)}
        self.metrics_log.write(self.step, "train", _mean_metrics(self._window) | rate)
        self._window, self._window_start = [], now

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
