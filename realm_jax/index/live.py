"""The MIPS index a loop retrieves from: built, published, reused, refreshed (sync or async).

An index is a published ``index.store.IndexStore`` step: embeddings of every block by the document
tower of train step ``s`` plus a searcher. Beside each published step the trainer keeps the tower
itself (``towers/<s>.npz``, written before the index is published), because REALM embeds a query
with the embedder *of the index snapshot*, not with the current one (docs/DESIGN.md 2.4).

``SyncIndex``: the trainer re-embeds the corpus every ``refresh_every`` steps (0: never again; a
frozen index). Deterministic: a resumed run loads the snapshot it had. ``AsyncIndex``: REALM's
asynchronous refresh; a refresher (thread or spawned process) indexes the trainer's checkpoints
while training goes on and an ``IndexWatcher`` swaps newer indexes in between steps. Free-running
(``index.swap_lag`` 0) the index a step gets depends on machine speed; with ``swap_lag`` L > 0
it follows a ``SwapSchedule`` instead: step t uses the index of the newest checkpoint (taken every
``checkpoint_every_steps``, step 0 included) at least L steps old, the refresher indexes exactly
those checkpoints in order, and the trainer waits when one is late. Runs, resumed or not, then
get the same index at every step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.data.blocks import BlockStore
from realm_jax.index.corpus_pass import MERGED, clear_passes, embed_pass, pass_dir
from realm_jax.index.embed import CorpusEmbedder
from realm_jax.index.refresher import RefreshConfig, build_searcher, start_refresher
from realm_jax.index.searcher import Searcher, emb_dtype
from realm_jax.index.store import IndexStore, LoadedIndex
from realm_jax.index.towers import load_tower, prune_towers, save_tower
from realm_jax.index.watcher import IndexWatcher, SwapSchedule
from realm_jax.models.realm import EmbedderSpec, embedder_params
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.utils.devices import sync
from realm_jax.utils.turns import Turns

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """An index in use: the step that built it, its searcher and embeddings, and its tower."""

    step: int
    searcher: Searcher
    block_emb: np.ndarray  # [N, D]
    tower: dict | None  # the document tower's {"params": ...} at ``step``; None: not known


_EMBEDDERS: dict[EmbedderSpec, CorpusEmbedder] = {}


def _embedder(spec: EmbedderSpec) -> CorpusEmbedder:
    if spec not in _EMBEDDERS:  # one per tower shape, so its pmapped shapes compile once
        _EMBEDDERS[spec] = CorpusEmbedder(spec.module())
    return _EMBEDDERS[spec]


def embed_blocks(
    spec: EmbedderSpec, tower: dict, store: BlockStore, index: ConfigDict, max_len: int, progress
) -> np.ndarray:
    """Embed_doc of every block -> [N, D] in ``index.emb_dtype``, in memory (corpus edits)."""
    return _embedder(spec)(
        tower, store, index.emb_batch_size, max_len, emb_dtype(index.emb_dtype), progress=progress
    )


def embed_corpus_pass(
    spec: EmbedderSpec, tower: dict, store: BlockStore, index: ConfigDict, max_len: int,
    workdir: str, tag: str, progress: bool,
) -> np.ndarray | None:
    """Embed_doc of every block -> [N, D] in ``index.emb_dtype``, memory-mapped from
    ``workdir/embeddings.npy`` on process 0 (None elsewhere): a sharded, resumable pass split
    across processes (``index/corpus_pass.py``)."""
    return embed_pass(
        _embedder(spec), tower, store, workdir, tag, batch_size=index.emb_batch_size,
        max_len=max_len, dtype=emb_dtype(index.emb_dtype), progress=progress,
    )


def publish(
    store: IndexStore, step: int, block_emb: np.ndarray, tower: dict, index: ConfigDict,
    embeddings_file: str | None = None,
) -> Snapshot:
    """Builds the searcher over block_emb, saves the tower, publishes ``step``; its snapshot."""
    searcher = build_searcher(index.searcher, block_emb)
    save_tower(store.root, step, tower)
    store.publish(step, block_emb, searcher, embeddings_file=embeddings_file)
    prune_towers(store)
    loaded = store.load(step)
    return Snapshot(step, loaded.searcher, loaded.block_emb, jax.device_put(tower))


def load_snapshot(store: IndexStore, step: int | None = None, exact: bool = False):
    """The newest published index at or below ``step`` (exactly ``step`` if ``exact``), or None."""
    loaded: LoadedIndex | None = store.load(step)
    if loaded is None or (exact and loaded.step != step):
        return None
    tower = load_tower(store.root, loaded.step)
    tower = None if tower is None else jax.device_put(tower)  # queries embed on device
    return Snapshot(loaded.step, loaded.searcher, loaded.block_emb, tower)


def copy_snapshot(source: Snapshot, store: IndexStore, step: int, index: ConfigDict) -> Snapshot:
    """Publishes another run's index (its embeddings and tower) as ``step`` of ``store``."""
    return publish(store, step, np.asarray(source.block_emb), source.tower, index)


class SyncIndex:
    """The trainer's own refresh: re-embed every ``refresh_every`` steps (0: frozen)."""

    def __init__(
        self, index_dir: str, spec: EmbedderSpec, store: BlockStore, index: ConfigDict,
        max_len: int, progress: bool = True,
    ):
        self.store = IndexStore(index_dir, keep=index.keep)
        self.spec, self.blocks, self.index = spec, store, index
        self.max_len, self.progress = max_len, progress
        self.snapshot: Snapshot | None = None

    def build(self, step: int, params: dict) -> Snapshot:
        """Embeds the corpus with the document tower in ``params`` and publishes it as ``step``."""
        start = time.perf_counter()
        tower = jax.device_get(embedder_params(params))
        workdir = pass_dir(self.store.root, step)
        primary = jax.process_index() == 0
        emb = embed_corpus_pass(self.spec, tower, self.blocks, self.index, self.max_len,
                                workdir, f"step {step}", self.progress and primary)
        if primary:
            merged = os.path.join(workdir, MERGED)
            self.snapshot = publish(self.store, step, emb, tower, self.index, merged)
            clear_passes(self.store.root, upto=step)
        sync(f"sync_index:published:{step}")
        if not primary:  # every host retrieves: each loads what process 0 published
            self.snapshot = load_snapshot(self.store, step, exact=True)
        seconds = time.perf_counter() - start
        log.info("index %d published (%d blocks, %.1f s)", step, len(self.blocks), seconds)
        return self.snapshot

    def start(self, step: int, params: dict, seed: Snapshot | None = None) -> Snapshot:
        """The index for a run starting (or resuming) at ``step``: the one it had, else a new one.

        ``seed`` (fresh runs only): an index already built from exactly these params.
        """
        primary = jax.process_index() == 0  # across hosts process 0 writes, then all read
        if primary:
            self.store.recover()
        sync("sync_index:recovered")
        self.snapshot = load_snapshot(self.store, step)
        if self.snapshot is None and seed is not None:
            if primary:
                copy_snapshot(seed, self.store, step, self.index)
            sync("sync_index:seeded")
            self.snapshot = load_snapshot(self.store, step, exact=True)
        if self.snapshot is None or self.snapshot.tower is None:
            self.build(step, params)
        return self.snapshot

    def current(self, step: int, params: dict) -> Snapshot:
        """The index for the batch of ``step``; rebuilt first when ``step`` is a refresh step."""
        every = self.index.refresh_every
        if every and step % every == 0 and step > self.snapshot.step:
            self.build(step, params)
        return self.snapshot

    def run_step(self, step_fn: Callable, *args):
        """``step_fn(*args)``: the trainer's step, when the index's refresh lets it (here: now)."""
        return step_fn(*args)

    def finish(self, step: int, params: dict) -> None:
        """Publishes the final params' index (the next stage reuses it) if it is not there yet."""
        if self.snapshot is None or self.snapshot.step != step:
            self.build(step, params)

    def close(self) -> None:
        pass


def swap_schedule(index: ConfigDict, checkpoint_every: int) -> SwapSchedule | None:
    """The schedule ``index.swap_lag`` asks for (None: free-running)."""
    lag = index.get("swap_lag", 0)
    return SwapSchedule(lag, checkpoint_every) if lag else None


class AsyncIndex(SyncIndex):
    """REALM's asynchronous refresh: a refresher indexes checkpoints, a watcher swaps them in."""

    def __init__(self, index_dir, spec, store, index, max_len, checkpoint_dir, progress=True,
                 checkpoint_every: int = 0):
        super().__init__(index_dir, spec, store, index, max_len, progress)
        self.checkpoint_dir = checkpoint_dir
        self.schedule = swap_schedule(index, checkpoint_every)
        self.watcher: IndexWatcher | None = None
        self.refresher = None
        # A thread refresher shares the trainer's memory: its batches and the steps take turns.
        self.turns = Turns() if index.refresher == "thread" else None

    def start(self, step: int, params: dict, seed: Snapshot | None = None) -> Snapshot:
        c, schedule = self.index, self.schedule
        if schedule is None or step == 0:
            super().start(step, params, seed)  # the first index is built synchronously
        else:  # resuming on a schedule: its index comes from the store or from the refresher
            if jax.process_index() == 0:
                self.store.recover()
            sync("async_index:recovered")
        config = RefreshConfig(
            self.checkpoint_dir, self.store.root, self.blocks.directory, c.searcher,
            c.emb_dtype, c.emb_batch_size, self.max_len, c.keep, c.poll_seconds, progress=False,
            in_order_every=0 if schedule is None else schedule.every,
        )
        if jax.process_index() == 0:  # one refresher per job (or run experiments/refresh.py)
            self.refresher = start_refresher(config, c.refresher, self.blocks, self.turns)
        timeout = c.get("swap_timeout", 3600.0)
        alive = None if self.refresher is None else self.refresher.is_alive
        self.watcher = IndexWatcher(self.store, c.poll_seconds, c.min_index_age, schedule=schedule,
                                    timeout=timeout, publisher_alive=alive).start()
        self.watcher.wait_for_first(600.0 if schedule is None else timeout, train_step=step)
        return self.current(step, params)

    def current(self, step: int, params: dict) -> Snapshot:
        """The newest index the watcher has ready (a reference swap at most, never a wait); with
        a swap schedule, the one it names for ``step`` (waiting for it if it is late)."""
        loaded = self.watcher.current(step)
        if self.snapshot is None or loaded.step != self.snapshot.step:
            self.snapshot = self._snapshot(loaded)
        return self.snapshot

    def run_step(self, step_fn: Callable, *args):
        """``step_fn(*args)``; beside a thread refresher, in a turn of its own and finished before
        the refresher's next embedding batch starts (the memory is the larger of the two, not
        their sum; the results are the same, as the swap schedule fixes each step's index)."""
        if self.turns is None:
            return step_fn(*args)
        with self.turns:
            return jax.block_until_ready(step_fn(*args))

    def _snapshot(self, loaded: LoadedIndex) -> Snapshot:
        """``loaded`` with its query tower: the one the watcher's thread loaded, else the one
        published beside it, else (an index published without one) the checkpoint's."""
        tower = loaded.tower
        if tower is None:
            tower = load_tower(self.store.root, loaded.step) or self._checkpoint_tower(loaded.step)
        return Snapshot(loaded.step, loaded.searcher, loaded.block_emb, tower)

    def _checkpoint_tower(self, step: int) -> dict | None:
        try:
            return Checkpoints(self.checkpoint_dir, read_only=True).restore_embedder_params(step)
        except Exception as e:  # pruned already: queries use the current tower until the next one
            log.warning(
                "no tower for index %d (%s); embedding queries with current params", step, e
            )
            return None

    def finish(self, step: int, params: dict) -> None:
        """Waits for the refresher to index the final checkpoint (the loop marks DONE first)."""
        if self.refresher is not None:
            self.refresher.join()
        sync("async_index:finished")  # every process waits for process 0's refresher
        final = self.store.load()
        if final is not None and final.step != self.snapshot.step:  # the final eval uses it
            self.snapshot = self._snapshot(final)
        self.close()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.refresher is not None:
            self.refresher.stop()
            self.refresher = None


def make_index(
    index: ConfigDict, index_dir: str, spec: EmbedderSpec, store: BlockStore, max_len: int,
    checkpoint_dir: str, progress: bool = True, checkpoint_every: int = 0,
) -> SyncIndex:
    """A SyncIndex or an AsyncIndex, as ``index.mode`` says (``checkpoint_every``: the trainer's
    ``checkpoint_every_steps``, which an ``index.swap_lag`` schedule follows)."""
    if index.mode == "sync":
        return SyncIndex(index_dir, spec, store, index, max_len, progress)
    if index.mode == "async":
        return AsyncIndex(index_dir, spec, store, index, max_len, checkpoint_dir, progress,
                          checkpoint_every)
    raise ValueError(f"index.mode={index.mode!r}: expected 'sync' or 'async'")
