"""Index watcher: loads in the background, swaps only at current(), honours refresh_interval;
on a swap schedule, uses the index the schedule names for each step and waits when it is late."""

import logging
import threading
import time

import numpy as np
import pytest

from realm_jax.index import watcher as watcher_module
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.store import IndexStore
from realm_jax.index.watcher import IndexWatcher, SwapSchedule


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


def test_swap_schedule_names_the_newest_checkpoint_old_enough():
    lag2 = SwapSchedule(lag=2, every=2)
    assert [lag2.index_step(t) for t in range(9)] == [0, 0, 0, 0, 2, 2, 4, 4, 6]
    lag3 = SwapSchedule(lag=3, every=2)  # a lag off the checkpoint grid
    assert [lag3.index_step(t) for t in range(8)] == [0, 0, 0, 0, 0, 2, 2, 4]
    with pytest.raises(ValueError, match="lag=0"):
        SwapSchedule(lag=0, every=2)


def test_scheduled_watcher_uses_the_scheduled_index_not_the_newest(tmp_path):
    store = IndexStore(str(tmp_path), keep=5)
    for step in (0, 2, 4, 6):
        _publish(store, step)
    watcher = IndexWatcher(store, schedule=SwapSchedule(lag=2, every=2))  # polled by hand
    assert watcher.wait_for_first(1.0, train_step=3).step == 0
    assert watcher.poll_once() and watcher._parked.step == 2  # prefetches the next one only
    assert [watcher.current(t).step for t in range(3, 8)] == [0, 2, 2, 4, 4]
    assert watcher.swaps == [(3, 0), (4, 2), (6, 4)]
    assert watcher.staleness(7) == 3
    # A resumed run starts at its step's index, even with newer ones published.
    resumed = IndexWatcher(store, schedule=SwapSchedule(lag=2, every=2))
    assert resumed.wait_for_first(1.0, train_step=5).step == 2


def test_scheduled_watcher_waits_for_a_late_index(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(watcher_module, "WAIT_LOG_SECONDS", 0.1)
    store = IndexStore(str(tmp_path))
    _publish(store, 0)
    watcher = IndexWatcher(store, poll_seconds=0.01, schedule=SwapSchedule(2, 2)).start()
    try:
        assert watcher.current(3).step == 0 and watcher.waits == []
        late = threading.Timer(0.3, _publish, (store, 2))
        late.start()
        with caplog.at_level(logging.INFO, logger=watcher_module.__name__):
            start = time.perf_counter()
            assert watcher.current(4).step == 2
        assert time.perf_counter() - start >= 0.25
        (step, index_step, seconds), = watcher.waits
        assert (step, index_step) == (4, 2) and seconds >= 0.25
        assert "train step 4 waited" in caplog.text and "for index 2" in caplog.text
        _publish(store, 4)  # the refresher keeps up: the thread prefetches, no wait
        deadline = time.monotonic() + 10
        while watcher._parked is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.current(6).step == 4 and len(watcher.waits) == 1
    finally:
        watcher.stop()


def test_scheduled_watcher_fails_with_one_line_when_the_index_never_comes(tmp_path):
    store = IndexStore(str(tmp_path), keep=2)
    _publish(store, 0)
    watcher = IndexWatcher(store, poll_seconds=0.01, schedule=SwapSchedule(2, 2), timeout=0.2)
    assert watcher.current(2).step == 0
    with pytest.raises(TimeoutError, match=r"^train step 4: index 2 was not published within"):
        watcher.current(4)
    for step in (2, 4, 6):
        _publish(store, step)  # keep=2: index 2 is pruned before step 4 could load it
    with pytest.raises(LookupError, match="index 2 is pruned or damaged"):
        watcher.current(4)


def test_scheduled_watcher_stops_waiting_when_the_refresher_has_stopped(tmp_path):
    store = IndexStore(str(tmp_path))
    _publish(store, 0)
    alive = [True]
    watcher = IndexWatcher(store, schedule=SwapSchedule(2, 2), publisher_alive=lambda: alive[0])
    assert watcher.current(3).step == 0
    alive[0] = False
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="^train step 4: index 2 is not published and the"):
        watcher.current(4)
    assert time.perf_counter() - start < 1.0  # not the hour-long timeout
