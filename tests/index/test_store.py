"""Index store: atomic publish, verified load, pruning, and damaged directories skipped by name."""

import json
import logging
import os

import numpy as np
import pytest

from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import ScannSearcher
from realm_jax.index.searcher import BFLOAT16
from realm_jax.index.store import EMBEDDINGS, LATEST, META, IndexStore

N, D = 300, 8


def _emb(step, dtype=np.float32):
    return np.random.default_rng(step).normal(size=(N, D)).astype(np.float32).astype(dtype)


def _publish(store, step, kind="exact", dtype=np.float32, **kw):
    emb = _emb(step, dtype)
    searcher = ExactSearcher(emb) if kind == "exact" else ScannSearcher.build(emb)
    return store.publish(step, emb, searcher, **kw), emb, searcher


@pytest.mark.parametrize("kind", ["exact", "scann"])
@pytest.mark.parametrize("dtype", [np.float32, BFLOAT16])
def test_publish_then_load_round_trips(tmp_path, kind, dtype):
    store = IndexStore(str(tmp_path))
    assert store.load() is None and store.latest_step() is None
    phases = []
    meta, emb, searcher = _publish(store, 7, kind, dtype, on_phase=phases.append)
    assert phases[0] == "publish:embeddings" and phases[-1] == "publish:prune"
    assert sorted(os.listdir(tmp_path)) == ["7", LATEST]
    loaded = store.load()
    assert loaded.step == 7 and loaded.meta == meta
    assert meta["num_blocks"] == N and meta["dim"] == D and meta["searcher"] == kind
    assert meta["recall"]["recall_at_10"] == 1.0 and EMBEDDINGS in meta["files"]
    assert loaded.block_emb.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(loaded.block_emb), emb)
    q = np.random.default_rng(0).normal(size=(5, D)).astype(np.float32)
    for a, b in zip(loaded.searcher.search(q, 10), searcher.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    if kind == "scann" and dtype == np.float32:  # ScaNN reads the store's embeddings file
        assert "searcher/dataset.npy" not in meta["files"]


def test_keeps_the_newest(tmp_path):
    store = IndexStore(str(tmp_path), keep=2)
    for step in (10, 20, 30, 40):
        _publish(store, step)
    assert store.steps() == [30, 40] and store.latest_step() == 40
    with pytest.raises(ValueError, match="older than the published index 40"):
        _publish(store, 35)
    _publish(store, 40)  # re-publishing the same step replaces it
    assert store.load().step == 40


@pytest.mark.parametrize("damage", ["missing file", "bad checksum", "bad meta"])
def test_damaged_index_is_skipped_with_a_warning(tmp_path, caplog, damage):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    _publish(store, 2)
    newest = os.path.join(str(tmp_path), "2")
    if damage == "missing file":
        os.remove(os.path.join(newest, EMBEDDINGS))
    elif damage == "bad checksum":
        with open(os.path.join(newest, EMBEDDINGS), "r+b") as f:
            f.seek(-3, os.SEEK_END)
            f.write(b"\x00\x01\x02")
    else:
        with open(os.path.join(newest, META), "w") as f:
            f.write("{not json")
    with caplog.at_level(logging.WARNING):
        loaded = store.load()
    assert loaded.step == 1
    np.testing.assert_array_equal(np.asarray(loaded.block_emb), _emb(1))
    reason = {"missing file": "missing file", "bad checksum": "bad checksum", "bad meta": "unread"}
    assert any(newest in r.message and reason[damage] in r.message for r in caplog.records)


def test_leftovers_of_a_killed_publish_stay_invisible(tmp_path, caplog):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    # Killed while writing: a half-written <step>.tmp.
    os.makedirs(tmp_path / "3.tmp")
    (tmp_path / "3.tmp" / EMBEDDINGS).write_bytes(b"partial")
    # Killed between the rename and LATEST: a complete but unpublished <step>.
    meta, _, _ = _publish(IndexStore(str(tmp_path / "other")), 2)
    os.replace(tmp_path / "other" / "2", tmp_path / "2")
    assert store.load().step == 1  # readers follow LATEST
    with caplog.at_level(logging.WARNING):
        store.recover()  # the restarted writer finishes the interrupted publish
    assert not caplog.records
    assert store.latest_step() == 2 and store.load().meta == meta
    assert sorted(os.listdir(tmp_path)) == ["1", "2", LATEST, "other"]


def test_recover_removes_a_damaged_unpublished_index(tmp_path, caplog):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    _publish(IndexStore(str(tmp_path / "other")), 2)
    os.replace(tmp_path / "other" / "2", tmp_path / "2")
    os.remove(tmp_path / "2" / META)
    with caplog.at_level(logging.WARNING):
        store.recover()
    assert store.steps() == [1] and store.latest_step() == 1
    assert any(str(tmp_path / "2") in r.message for r in caplog.records)


def test_unreadable_latest_is_a_warning(tmp_path, caplog):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    (tmp_path / LATEST).write_text("garbage")
    with caplog.at_level(logging.WARNING):
        assert store.load() is None
    assert any("LATEST" in r.message for r in caplog.records)
    meta = json.loads((tmp_path / "1" / META).read_text())
    assert meta["step"] == 1 and set(meta["files"][EMBEDDINGS]) == {"bytes", "sha256"}
