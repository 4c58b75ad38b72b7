"""Training-loop overhead: ``TrainLoop`` (logging, metrics, prefetch) against the bare pmapped
step, on the same ICT batches from the same start.

Both run ``warmup + steps`` steps from the same state over the same pre-built host batches; only
the last ``steps`` are timed, each until its results are computed. The bare loop is the step and
the batch's reshape into per-device slices, nothing else. The loop is an ICT stage's own loop
(``TrainLoop.prefetch`` + ``record``) writing its metrics every ``log_every_steps`` to a
temporary run directory; its final checkpoint is timed apart (the checkpoint cadence is a
config's choice, not loop overhead) and reported in its own column.
"""

from __future__ import annotations

import os
import tempfile
import time

import jax
import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.data.input_pipeline import IctBatches
from realm_jax.run.config import load_config, resolve_config
from realm_jax.run.model_setup import create_state
from realm_jax.train import ict
from realm_jax.train.init import setup_stage
from realm_jax.train.launch import quiet_logs
from realm_jax.train.loop import TrainLoop
from realm_jax.utils.devices import replicate, shard


def bare_seconds(p_train_step, state, batches: list[dict], warmup: int) -> float:
    """Seconds of the bare pmapped step over ``batches[warmup:]`` (after ``warmup`` steps)."""
    state = replicate(state)
    rng = replicate(jax.random.PRNGKey(1))
    for batch in batches[:warmup]:
        state, metrics = p_train_step(state, shard(batch), rng)
    jax.block_until_ready((state, metrics))
    start = time.perf_counter()
    for batch in batches[warmup:]:
        state, metrics = p_train_step(state, shard(batch), rng)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - start


def loop_seconds(config, workdir: str, p_train_step, state, batches: list[dict],
                 warmup: int) -> tuple[float, float]:
    """(seconds of the loop over ``batches[warmup:]``, seconds of its final checkpoint)."""
    marks: dict[str, float] = {}
    with TrainLoop(config, workdir, "ict", state) as loop:
        save = loop.save

        def timed_save(step: int) -> None:  # the last step's metrics are fetched by now
            marks["save"] = time.perf_counter()
            save(step)

        loop.save = timed_save
        for step, batch in loop.prefetch(lambda s: batches[s]):
            if step == warmup:
                jax.block_until_ready(loop.state)
                marks["start"] = time.perf_counter()
            new_state, metrics = p_train_step(loop.state, batch, loop.rng)
            loop.record(new_state, metrics)
    end = time.perf_counter()
    return marks["save"] - marks["start"], end - marks["save"]


def loop_speed_main(config_path: str, config_arg: str | None, steps: int, warmup: int,
                    rounds: int) -> dict:
    quiet_logs()
    config = load_config(os.path.dirname(config_path),
                         os.path.basename(config_path) + (f":{config_arg}" if config_arg else ""))
    config.num_train_steps = warmup + steps
    config.checkpoint_every_steps = config.num_train_steps  # one save: the last step's
    config.eval_every_steps = 0
    config.progress = False
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_config(config, os.path.join(tmp, "setup"), "ict")
        _, store, model, params, _ = setup_stage(config, os.path.join(tmp, "setup"))
        make_batch = IctBatches(store, config)
        batches = [make_batch(s) for s in range(config.num_train_steps)]
        p_train_step = ict.train_step(model, donate=True)
        results = []
        for r in range(rounds):  # alternating, so load on a shared machine hits both alike
            bare = bare_seconds(p_train_step, create_state(config, params), batches, warmup)
            looped, save = loop_seconds(config, os.path.join(tmp, f"loop{r}"), p_train_step,
                                        create_state(config, params), batches, warmup)
            results.append((bare, looped, save))
    bare = float(np.median([b for b, _, _ in results]))
    looped = float(np.median([lp for _, lp, _ in results]))
    save = float(np.median([s for _, _, s in results]))
    record = {
        "benchmark": "loop_speed", "config": f"{os.path.basename(config_path)}"
        + (f":{config_arg}" if config_arg else ""), "steps": steps, "rounds": rounds,
        "batch_size": config.batch_size, "devices": jax.local_device_count(),
        "bare_steps_per_s": steps / bare, "loop_steps_per_s": steps / looped,
        "ratio": bare / looped, "final_checkpoint_s": save, **machine_info(),
    }
    rows = [[r + 1, b, lp, b / lp, s] for r, (b, lp, s) in enumerate(results)]
    print(format_table(["round", "bare s", "loop s", "loop / bare speed", "final ckpt s"], rows))
    print(f"median: bare {record['bare_steps_per_s']:.3f} steps/s, loop "
          f"{record['loop_steps_per_s']:.3f} steps/s, ratio {record['ratio']:.3f}")
    print(json_line(record))
    return record
