"""Orbax checkpoints: the trainer's state round-trips; the re-indexer reads only the doc tower."""

import jax
import numpy as np
import pytest

from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import RealmConfig, init_params
from realm_jax.train.checkpoint import (
    Checkpoints,
    EmbedderSpec,
    embedder_params,
    is_done,
    mark_done,
    read_embedder_spec,
    restore_embedder_params,
    save_checkpoint,
)
from realm_jax.train.state import TrainState, bert_adamw


@pytest.fixture(scope="module")
def state():
    cfg = RealmConfig(tiny_config().replace(vocab_size=100), proj_size=8, share_embedders=False)
    one = np.ones((1, 6), np.int32)
    params = init_params(
        cfg.retriever(), jax.random.PRNGKey(0), one, one, one[:, None], one[:, None]
    )
    return cfg, TrainState.create(params, bert_adamw(1e-3, 10, 1))


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_restore_embedder_params_reads_the_document_tower(tmp_path, state):
    cfg, st = state
    spec = EmbedderSpec.from_realm_config(cfg)
    reader = Checkpoints(str(tmp_path), read_only=True)  # opened before anything is saved
    assert reader.latest_step() is None
    save_checkpoint(str(tmp_path), 3, st, embedder_spec=spec)
    save_checkpoint(str(tmp_path), 5, st.replace(step=st.step + 5))
    assert reader.latest_step() == 5
    tower = restore_embedder_params(str(tmp_path))
    _assert_trees_equal(tower, embedder_params(st.params))
    assert "query_embedder" in st.params["params"]  # present in the state, not restored
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(tower))
    assert read_embedder_spec(str(tmp_path)) == spec
    # The tower plugs into the spec's module.
    ids = np.ones((2, 6), np.int32)
    assert spec.module().apply(tower, ids, ids).shape == (2, 8)


def test_state_round_trips_and_done_marker(tmp_path, state):
    _, st = state
    ckpt = Checkpoints(str(tmp_path), max_to_keep=2)  # asynchronous saves
    for step in (1, 2, 3):
        ckpt.save(step, st.replace(step=st.step + step))
    ckpt.wait()
    assert ckpt.latest_step() == 3 and not is_done(str(tmp_path))
    restored = ckpt.restore_state(3, st)
    assert int(restored.step) == 3
    _assert_trees_equal(restored.params, st.params)
    _assert_trees_equal(restored.opt_state, st.opt_state)
    mark_done(str(tmp_path))
    assert is_done(str(tmp_path))
    ckpt.close()


def test_missing_spec_and_tower_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="embedder.json: missing"):
        read_embedder_spec(str(tmp_path))
    with pytest.raises(KeyError, match="no document tower"):
        embedder_params({"params": {"encoder": {}}})
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        restore_embedder_params(str(tmp_path))
