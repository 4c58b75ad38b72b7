"""The REALM pre-training stage end to end at tiny scale (``train/realm.py``): from the ICT run
with a synchronous refresh, and alone with an asynchronous refresher thread."""

import os

import numpy as np
import pytest

from realm_jax.index.store import IndexStore
from realm_jax.run import defaults
from realm_jax.train import realm

# The stages share the session fixtures of tests/train/conftest.py: one worker trains the chain.
# Stage runs end to end, chained through session fixtures: one worker, `make test-slow`.
pytestmark = [pytest.mark.xdist_group("stage_chain"), pytest.mark.slow]


def test_realm_starts_from_ict_and_refreshes_its_index(ict_run, realm_run, train_metrics):
    workdir, metrics, out = realm_run
    assert f"'retriever': '{ict_run[0]} step 4'" in out  # REALM's retriever from ICT
    assert set(metrics) >= {"loss", "mlm_accuracy", "retrieval_utility", "recall_at_5"}
    assert metrics["index_step"] == 4  # refreshed every 2 steps, the final one included
    # Index 0 is ICT's final index, reused (same blocks, same length): identical embeddings.
    index = IndexStore(str(workdir / "index"))
    assert index.steps() == [0, 2, 4]
    # Each step logs the index its batch came from: refreshed every 2 steps, so 0, 1, 0, 1 behind.
    assert [r["staleness"] for r in train_metrics(workdir)] == [0, 1, 0, 1]
    ict_emb = IndexStore(str(ict_run[0] / "index")).load(4).block_emb
    np.testing.assert_array_equal(index.load(0).block_emb, ict_emb)


def test_realm_with_asynchronous_refresh(tmp_path, checkpoint_steps):
    """A refresher thread indexes the trainer's checkpoints; the last one after DONE."""
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.index.mode, config.index.refresher, config.index.poll_seconds = "async", "thread", 0.1
    metrics = realm.train_and_evaluate(config, str(tmp_path))
    published = IndexStore(str(tmp_path / "index")).steps()
    assert published[0] == 0 and published[-1] == 4  # the first (built by the trainer), the last
    assert metrics["index_step"] == 4  # the final evaluation uses the final index
    assert os.path.exists(tmp_path / "checkpoints" / "DONE")
    assert checkpoint_steps(tmp_path / "checkpoints") == [2, 4]
