"""A full disk (a real ENOSPC from a tmpfs) and an I/O error while an index is published.

The disk is filled at the start of each publish phase that writes: the embeddings, meta.json (the
``fsync`` phase writes it) and LATEST. Each time the user gets one OSError line naming the file,
the index published before still loads, no ``<step>.tmp`` is left, and once there is room again
the same publish succeeds. A failed ``fsync`` (EIO, patched: a tmpfs cannot be made to fail one)
is handled the same way.
"""

import errno
import os

import numpy as np
import pytest

from realm_jax.index.exact import ExactSearcher
from realm_jax.index.store import EMBEDDINGS, LATEST, META, IndexStore
from tests.faults.disk import assert_one_line_enospc, leftovers

N, D = 2048, 64  # 512 KiB of float32 embeddings


def _emb(step: int) -> np.ndarray:
    return np.random.default_rng(step).normal(size=(N, D)).astype(np.float32)


def _publish(store: IndexStore, step: int, **kw) -> dict:
    emb = _emb(step)
    return store.publish(step, emb, ExactSearcher(emb), **kw)


def _assert_serves(root: str, step: int) -> None:
    loaded = IndexStore(root, full_check=True).load()
    assert loaded is not None and loaded.step == step
    np.testing.assert_array_equal(np.asarray(loaded.block_emb), _emb(step))


# The file whose write fails when the disk fills at the start of each phase.
FAILS = {"publish:embeddings": os.path.join("2.tmp", EMBEDDINGS),
         "publish:fsync": os.path.join("2.tmp", META), "publish:latest": LATEST}


@pytest.mark.parametrize("phase", list(FAILS))
def test_publish_on_a_full_disk(disk, phase):
    root = os.path.join(disk.path, "index")
    store = IndexStore(root)
    _publish(store, 1)
    fill = lambda name: disk.fill() if name == phase else None
    with pytest.raises(OSError) as caught:
        _publish(store, 2, on_phase=fill)
    assert_one_line_enospc(caught.value, root)
    assert caught.value.filename == os.path.join(root, FAILS[phase])
    assert leftovers(root) == []
    assert store.latest_step() == 1
    _assert_serves(root, 1)
    disk.make_room()
    if phase == "publish:latest":  # step 2 was renamed into place: the writer's next start
        assert store.steps() == [1, 2]  # publishes it (it verifies), as after a kill there
        store.recover()
    else:
        assert store.steps() == [1]
        _publish(store, 2)
    assert store.latest_step() == 2 and leftovers(root) == []
    _assert_serves(root, 2)


def test_publish_with_a_failing_fsync(tmp_path, monkeypatch):
    root = str(tmp_path / "index")
    store = IndexStore(root)
    _publish(store, 1)

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))  # as the kernel reports it: no path

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        with pytest.raises(OSError) as caught:
            _publish(store, 2)
    error = caught.value
    assert error.errno == errno.EIO and "\n" not in str(error)
    assert error.filename == os.path.join(root, "2.tmp", EMBEDDINGS)
    assert error.filename in str(error)
    assert leftovers(root) == [] and store.steps() == [1] and store.latest_step() == 1
    _assert_serves(root, 1)
    _publish(store, 2)
    _assert_serves(root, 2)
