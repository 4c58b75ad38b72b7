"""The ICT stage end to end at tiny scale (``train/ict.py``)."""

import glob

import pytest

from realm_jax.index.store import IndexStore

# The stages share the session fixtures of tests/train/conftest.py: one worker trains the chain.
# Stage runs end to end, chained through session fixtures: one worker, `make test-slow`.
pytestmark = [pytest.mark.xdist_group("stage_chain"), pytest.mark.slow]


def test_ict_trains_checkpoints_logs_and_publishes_its_index(
    ict_run, train_metrics, checkpoint_steps
):
    workdir, metrics, _ = ict_run
    assert set(metrics) >= {"loss", "accuracy"}
    assert checkpoint_steps(workdir / "checkpoints") == [2, 4]
    assert [r["step"] for r in train_metrics(workdir)] == [1, 2, 3, 4]
    assert glob.glob(str(workdir / "events.out.tfevents*"))  # TensorBoard
    assert IndexStore(str(workdir / "index")).latest_step() == 4  # for the next stages
