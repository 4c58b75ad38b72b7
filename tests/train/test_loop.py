"""The loop every stage shares (``TrainLoop``): resume, NaN and Ctrl-C behaviour on a toy stage
(a linear model, so each case runs in seconds)."""

import json
import os

import numpy as np
import pytest

from realm_jax.errors import NonFiniteLossError
from realm_jax.run.files import METRICS_FILE


def _metrics(workdir, split="train"):
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def _steps(directory):
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, loop_config, toy_stage):
    toy_stage()(loop_config(), str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        toy_stage(interrupt_at=3)(loop_config(), str(tmp_path / "b"))
    assert _steps(tmp_path / "b" / "checkpoints") == [2, 3]  # Ctrl-C saved the finished step 3
    toy_stage()(loop_config(), str(tmp_path / "b"))
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # resumed at 3: no step twice
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=0, atol=1e-6)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, loop_config, toy_stage):
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 4; .* checkpoint is step 2"):
        toy_stage(nan_at=3)(loop_config(), str(tmp_path))
    assert _steps(tmp_path / "checkpoints") == [2]
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3]


def test_prefetched_batches_train_exactly_as_inline_ones(tmp_path, loop_config, toy_stage):
    toy_stage()(loop_config(), str(tmp_path / "inline"))
    with pytest.raises(KeyboardInterrupt):  # raised on the prefetch thread, re-raised here
        toy_stage(interrupt_at=3, prefetch=True)(loop_config(), str(tmp_path / "prefetch"))
    assert _steps(tmp_path / "prefetch" / "checkpoints") == [2, 3]
    toy_stage(prefetch=True)(loop_config(), str(tmp_path / "prefetch"))
    inline, prefetched = _metrics(tmp_path / "inline"), _metrics(tmp_path / "prefetch")
    assert [r["step"] for r in prefetched] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in prefetched] == [r["loss"] for r in inline]  # the same arithmetic


def test_metrics_wait_on_device_for_their_window(tmp_path, loop_config, toy_stage):
    """Logged every 3 steps: one row per window, its mean; a NaN at step 5 is found when the
    window is fetched at step 6 (a checkpoint is due), before step 6 is saved."""
    toy_stage()(loop_config(), str(tmp_path / "every_step"))
    per_step = [r["loss"] for r in _metrics(tmp_path / "every_step")]
    toy_stage()(loop_config(log_every=3), str(tmp_path / "windows"))
    rows = _metrics(tmp_path / "windows")
    assert [r["step"] for r in rows] == [3, 6]
    # float32 losses averaged in float64 either way: equal to ~1e-7 relative
    np.testing.assert_allclose([r["loss"] for r in rows],
                               [np.mean(per_step[:3]), np.mean(per_step[3:])], rtol=1e-6)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 5; .* checkpoint is step 4"):
        toy_stage(nan_at=4)(loop_config(log_every=3), str(tmp_path / "nan"))
    assert _steps(tmp_path / "nan" / "checkpoints") == [2, 4]
    assert [r["step"] for r in _metrics(tmp_path / "nan")] == [3]
