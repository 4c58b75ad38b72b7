"""Index store: atomic publish, verified load, pruning, and damaged directories skipped by name."""

import json
import logging
import os

import numpy as np
import pytest

from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import ScannSearcher
from realm_jax.index.searcher import BFLOAT16
from realm_jax.index.store import EMBEDDINGS, LATEST, META, IndexCorrupt, IndexStore, verify_all

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
    assert meta["step"] == 1
    assert set(meta["files"][EMBEDDINGS]) == {"bytes", "sha256", "sample_sha256"}


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_the_default_check_is_sampled_and_the_full_check_reads_every_byte(tmp_path, caplog):
    """A byte changed between the sampled pieces passes the default load (its documented limit)
    and fails the full check, which then falls back to the previous index; a truncated file or a
    changed sampled piece fails both."""
    big = np.random.default_rng(0).normal(size=(20_000, 32)).astype(np.float32)  # 2.4 MiB
    store = IndexStore(str(tmp_path))
    store.publish(1, big[:100], ExactSearcher(big[:100]))
    store.publish(2, big, ExactSearcher(big))
    path = os.path.join(store.step_dir(2), EMBEDDINGS)
    size = os.path.getsize(path)
    step_between = (size - (1 << 16)) // 15  # samples start at multiples of this
    _flip_byte(path, step_between // 2 + 10)  # inside no sampled piece
    assert store.load().step == 2
    with caplog.at_level(logging.WARNING):
        assert IndexStore(str(tmp_path), full_check=True).load().step == 1
    assert any("bad checksum for embeddings.npy" in r.message for r in caplog.records)
    with pytest.raises(IndexCorrupt, match="bad checksum"):
        store.verify(2, full=True)
    _flip_byte(path, step_between // 2 + 10)  # restored
    _flip_byte(path, 2 * step_between + 5)  # inside a sampled piece
    with pytest.raises(IndexCorrupt, match=r"bad checksum for embeddings.npy \(sampled\)"):
        store.verify(2)
    _flip_byte(path, 2 * step_between + 5)
    store.verify(2, full=True)
    with open(path, "r+b") as f:
        f.truncate(size - 4)
    for full in (False, True):
        with pytest.raises(IndexCorrupt, match=f"has {size - 4} bytes, not {size}"):
            store.verify(2, full=full)


def test_an_index_published_before_sampled_digests_still_loads(tmp_path):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    meta_path = os.path.join(store.step_dir(1), META)
    with open(meta_path) as f:
        meta = json.load(f)
    for record in meta["files"].values():
        del record["sample_sha256"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    assert store.load().step == 1
    store.verify(1, full=True)


def test_verify_all_names_each_damaged_index(tmp_path):
    store = IndexStore(str(tmp_path))
    _publish(store, 1)
    _publish(store, 2)
    _flip_byte(os.path.join(store.step_dir(1), EMBEDDINGS), 200)
    results = verify_all(str(tmp_path))
    assert [(os.path.basename(d), p is None) for d, _, p in results] == [("1", False), ("2", True)]
    assert "bad checksum for embeddings.npy" in results[0][2]
