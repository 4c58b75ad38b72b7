"""Trainer side of the asynchronous refresh: notice, load and swap in newer indexes.

A background thread polls the index store; when LATEST moves it loads and verifies the new index
there with the document tower published beside it (file reads, checksums, searcher load, device
transfers all happen off the training thread)
and parks it. ``current(train_step)``, called by the batch builder between steps, only swaps a
parked index in: it never waits for I/O. ``refresh_interval`` holds an index until it is at least
that many steps old (0: swap as soon as a newer one is ready); REALM's "30x stale" ablation is
this knob times 30. Staleness = train step - index step.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import jax

from realm_jax.index.store import IndexStore, LoadedIndex
from realm_jax.index.towers import load_tower

log = logging.getLogger(__name__)


class IndexWatcher:
    """Keeps the newest published index loaded and swaps it in between training steps."""

    def __init__(
        self,
        store: IndexStore,
        poll_seconds: float = 1.0,
        refresh_interval: int = 0,
        **searcher_options,
    ):
        self.store = store
        self.poll_seconds = poll_seconds
        self.refresh_interval = refresh_interval
        self.searcher_options = searcher_options  # e.g. devices= for exact search
        self.swaps: list[tuple[int, int]] = []  # (train step, index step) of every swap
        self._index: LoadedIndex | None = None  # the one batches are built from
        self._parked: LoadedIndex | None = None  # loaded, waiting for the next step boundary
        self._lock = threading.Lock()  # guards _parked; held only to read or set a reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> IndexWatcher:
        """Starts the background polling thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, daemon=True, name="index")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a bad index must not kill the trainer's view of the good one
                log.exception("index poll failed; keeping index %s", self.index_step)
            self._stop.wait(self.poll_seconds)

    def _newest_held(self) -> int:
        held = [i.step for i in (self._index, self._parked) if i is not None]
        return max(held, default=-1)

    def poll_once(self) -> bool:
        """Loads the newest published index if it is newer than any held; True if one was parked."""
        latest = self.store.latest_step()
        if latest is None or latest <= self._newest_held():
            return False
        with self._lock:
            self._parked = None  # drop an older parked index before loading: one load at a time
        loaded = self.store.load(**self.searcher_options)  # falls back past damaged indexes
        if loaded is None or loaded.step <= self._newest_held():
            return False
        tower = load_tower(self.store.root, loaded.step)  # its query embedder, off the hot path
        if tower is not None:
            loaded = dataclasses.replace(loaded, tower=jax.device_put(tower))
        with self._lock:
            self._parked = loaded
        log.info("index %d loaded, waiting for a step boundary", loaded.step)
        return True

    def current(self, train_step: int) -> LoadedIndex | None:
        """The index to build this step's batch from; swaps in a parked one. Never blocks on I/O."""
        with self._lock:
            parked = self._parked
            held = self._index
            due = held is None or train_step - held.step >= self.refresh_interval
            if parked is not None and due:
                self._index, self._parked = parked, None
                self.swaps.append((train_step, parked.step))
        return self._index

    @property
    def index_step(self) -> int | None:
        return None if self._index is None else self._index.step

    def staleness(self, train_step: int) -> int | None:
        """Train step minus the step of the index in use (None before the first index)."""
        return None if self._index is None else train_step - self._index.step

    def wait_for_first(self, timeout: float) -> LoadedIndex:
        """Start-up only: blocks until some index is loaded (e.g. the initial one), or raises."""
        deadline = time.monotonic() + timeout
        while (index := self.current(0)) is None:
            if self._thread is None:
                self.poll_once()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.store.root}: no index published within {timeout:.0f} s")
            time.sleep(min(0.05, self.poll_seconds))
        return index
