"""Trainer side of the asynchronous refresh: notice, load and swap in newer indexes.

A background thread polls the index store; when LATEST moves it loads and verifies the new index
there with the document tower published beside it (file reads, checksums, searcher load, device
transfers all happen off the training thread)
and parks it. ``current(train_step)``, called by the batch builder between steps, only swaps a
parked index in: it never waits for I/O. ``refresh_interval`` holds an index until it is at least
that many steps old (0: swap as soon as a newer one is ready); REALM's "30x stale" ablation is
this knob times 30. Staleness = train step - index step.

With a ``SwapSchedule`` (``index.swap_lag``) the index a step uses no longer depends on when
indexes arrive: step t uses the index of the newest checkpoint at least ``lag`` steps old, and
``current`` waits for it when the refresher is late. The background thread then prefetches the
schedule's next index (exactly that step, not the newest), so a refresher that keeps up costs
no wait at all.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import jax

from realm_jax.index.store import IndexStore, LoadedIndex
from realm_jax.index.towers import load_tower

log = logging.getLogger(__name__)
WAIT_LOG_SECONDS = 1.0  # a step that waits longer for its index says so in the log


@dataclasses.dataclass(frozen=True)
class SwapSchedule:
    """Which index a train step uses when swaps follow the step count instead of the clock.

    Checkpoints are taken every ``every`` steps, step 0 included; the batch of step t is built
    from the index of the newest of them at least ``lag`` steps old (index 0 until there is one).
    """

    lag: int
    every: int

    def __post_init__(self):
        if self.lag < 1 or self.every < 1:
            raise ValueError(f"swap schedule lag={self.lag}, every={self.every}: both must be >= 1")

    def index_step(self, train_step: int) -> int:
        return max(0, (train_step - self.lag) // self.every * self.every)


class IndexWatcher:
    """Keeps the newest published index loaded and swaps it in between training steps
    (with ``schedule``: the index the schedule names for each step, waiting up to ``timeout``
    seconds for it, or until ``publisher_alive()`` says the refresher has stopped)."""

    def __init__(
        self,
        store: IndexStore,
        poll_seconds: float = 1.0,
        refresh_interval: int = 0,
        schedule: SwapSchedule | None = None,
        timeout: float = 3600.0,
        publisher_alive: Callable[[], bool] | None = None,
        **searcher_options,
    ):
        self.store = store
        self.schedule = schedule
        self.timeout = timeout
        self.publisher_alive = publisher_alive
        self.waits: list[tuple[int, int, float]] = []  # (train step, index step, seconds waited)
        self._want: int | None = None  # the index step current() is blocked on
        self._load_lock = threading.Lock()  # one load at a time: the thread's or current()'s
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
        """Loads the newest published index if it is newer than any held (with a schedule: the
        one it needs next, once published); True if one was parked."""
        if self.schedule is not None:
            return self._poll_scheduled()
        latest = self.store.latest_step()
        if latest is None or latest <= self._newest_held():
            return False
        with self._lock:
            self._parked = None  # drop an older parked index before loading: one load at a time
        loaded = self.store.load(**self.searcher_options)  # falls back past damaged indexes
        if loaded is None or loaded.step <= self._newest_held():
            return False
        loaded = self._with_tower(loaded)  # its query embedder, off the hot path
        with self._lock:
            self._parked = loaded
        log.info("index %d loaded, waiting for a step boundary", loaded.step)
        return True

    def _with_tower(self, loaded: LoadedIndex) -> LoadedIndex:
        """``loaded`` with the query tower published beside it, on the device (if any)."""
        tower = load_tower(self.store.root, loaded.step)
        return loaded if tower is None else dataclasses.replace(loaded, tower=jax.device_put(tower))

    def current(self, train_step: int) -> LoadedIndex | None:
        """The index to build this step's batch from; swaps in a parked one. Never blocks on I/O
        (with a schedule: blocks until the step's index is loaded, or raises TimeoutError)."""
        if self.schedule is not None:
            return self._current_scheduled(train_step, self.timeout)
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

    def wait_for_first(self, timeout: float, train_step: int = 0) -> LoadedIndex:
        """Start-up only: blocks until some index is loaded (e.g. the initial one), or raises;
        with a schedule, the index of ``train_step`` (the step a run starts or resumes at)."""
        if self.schedule is not None:
            return self._current_scheduled(train_step, timeout)
        deadline = time.monotonic() + timeout
        while (index := self.current(0)) is None:
            if self._thread is None:
                self.poll_once()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.store.root}: no index published within {timeout:.0f} s")
            time.sleep(min(0.05, self.poll_seconds))
        return index

    # -- scheduled swaps ----------------------------------------------------------------------

    def _target(self) -> int | None:
        """The index step to load now: the one current() waits for, else the schedule's next."""
        held = None if self._index is None else self._index.step
        parked = None if self._parked is None else self._parked.step
        want = self._want
        if want is None:
            if held is None:
                return None  # the first one is named by the trainer's first current()
            want = held + self.schedule.every
        return None if want in (held, parked) else want

    def _poll_scheduled(self) -> bool:
        with self._load_lock:
            target = self._target()
            latest = self.store.latest_step()
            if target is None or latest is None or latest < target:
                return False
            loaded = self.store.load(target, **self.searcher_options)
            if loaded is None or loaded.step != target:
                raise LookupError(f"{self.store.step_dir(target)}: index {target} is pruned or "
                                  f"damaged, and the swap schedule needs it")
            loaded = self._with_tower(loaded)
            with self._lock:
                self._parked = loaded
        log.info("index %d loaded, waiting for its step", target)
        return True

    def _swap_to(self, index_step: int, train_step: int) -> bool:
        """Makes ``index_step`` the index in use if it is held or parked; False if neither."""
        with self._lock:
            if self._index is not None and self._index.step == index_step:
                return True
            if self._parked is None or self._parked.step != index_step:
                return False
            self._index, self._parked = self._parked, None
            self.swaps.append((train_step, index_step))
            return True

    def _current_scheduled(self, train_step: int, timeout: float) -> LoadedIndex:
        need = self.schedule.index_step(train_step)
        start, slept = time.monotonic(), False  # a wait: the index was not yet published
        try:
            while not self._swap_to(need, train_step):
                self._want = need
                alive = self.publisher_alive is None or self.publisher_alive()
                if self._poll_scheduled():
                    continue
                if not alive and not self._swap_to(need, train_step):  # the thread may have
                    # parked it meanwhile; else polled once more after it stopped: nothing comes
                    raise RuntimeError(f"train step {train_step}: index {need} is not published "
                                       f"and the refresher has stopped (see its log)")
                if time.monotonic() - start > timeout:
                    raise TimeoutError(
                        f"train step {train_step}: index {need} was not published within "
                        f"{timeout:.0f} s (index.swap_lag={self.schedule.lag}); is the "
                        f"refresher running?"
                    )
                time.sleep(min(0.05, self.poll_seconds))
                slept = True
        finally:
            self._want = None
        waited = time.monotonic() - start
        if slept:
            self.waits.append((train_step, need, waited))
        if waited > WAIT_LOG_SECONDS:
            log.info("train step %d waited %.1f s for index %d (index.swap_lag=%d)",
                     train_step, waited, need, self.schedule.lag)
        return self._index
