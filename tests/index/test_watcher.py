"""Index watcher: loads in the background, swaps only at current(), honours refresh_interval."""

import threading
import time

import numpy as np

from realm_jax.index.exact import ExactSearcher
from realm_jax.index.store import IndexStore
from realm_jax.index.watcher import IndexWatcher


def _publish(store, step):
    emb = np.random.default_rng(step).normal(size=(50, 4)).astype(np.float32)
    store.publish(step, emb, ExactSearcher(emb))


class SlowStore(IndexStore):
    """A store whose loads block until released: stands in for a 13M-block index."""

    release = threading.Event()

    def load(self, *args, **kwargs):
        self.release.wait()
        return super().load(*args, **kwargs)


def test_swaps_between_steps_without_waiting(tmp_path):
    store = SlowStore(str(tmp_path))
    _publish(store, 0)
    store.release.set()
    watcher = IndexWatcher(store, poll_seconds=0.01).start()
    try:
        assert watcher.wait_for_first(10).step == 0
        store.release.clear()
        _publish(store, 5)
        time.sleep(0.05)  # the poller is now stuck in the slow load
        start = time.perf_counter()
        assert watcher.current(7).step == 0  # still the old index, and no wait
        assert time.perf_counter() - start < 0.01
        assert watcher.staleness(7) == 7
        store.release.set()
        deadline = time.monotonic() + 10
        while watcher._parked is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.index_step == 0  # parked, not yet swapped
        assert watcher.current(8).step == 5 and watcher.staleness(8) == 3
        assert watcher.swaps == [(0, 0), (8, 5)]
    finally:
        store.release.set()
        watcher.stop()


def test_refresh_interval_holds_an_index_until_it_is_old_enough(tmp_path):
    store = IndexStore(str(tmp_path))
    _publish(store, 0)
    watcher = IndexWatcher(store, refresh_interval=10)  # polled by hand: no thread
    watcher.poll_once()
    assert watcher.current(0).step == 0
    _publish(store, 4)
    assert watcher.poll_once()
    assert watcher.current(6).step == 0  # index 0 is 6 steps old: too young to replace
    _publish(store, 8)
    assert watcher.poll_once()  # the newer one replaces the parked one
    assert watcher.current(9).step == 0
    assert watcher.current(10).step == 8 and watcher.swaps == [(0, 0), (10, 8)]
    assert not watcher.poll_once()  # nothing newer
