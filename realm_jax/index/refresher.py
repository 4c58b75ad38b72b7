"""The re-indexing job (REALM's asynchronous refresh): checkpoint -> embeddings -> searcher.

It polls the trainer's checkpoint directory; for the newest step not yet published it restores
only the document tower, embeds the whole corpus, builds the searcher and publishes it atomically
(``IndexStore.publish``), and repeats until the trainer's DONE marker (after indexing the last
step). With ``in_order_every`` (the trainer's ``index.swap_lag`` schedule) it indexes every
checkpoint at a multiple of that many steps, oldest first, instead of skipping to the newest: the
trainer waits for exactly those. A separate process in the real set-up
(``experiments/refresh.py`` or ``start_refresher(..., "process")``); a background thread for
small runs. Killed at any point, it leaves the published indexes intact, and a restarted
refresher clears the leftovers and carries on; a half-done embedding pass
(``<index_dir>/.embed-<step>/``, ``index/corpus_pass.py``) is resumed, not restarted.

Across hosts (``jax.distributed``): every process runs the refresher; process 0 decides which step
to index and broadcasts it, each process embeds its share of the shards on its local devices, and
process 0 merges them, builds the searcher and publishes (a shared filesystem is assumed, as for
orbax checkpoints).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable

import jax
import numpy as np

from realm_jax.data.blocks import BlockStore
from realm_jax.index.corpus_pass import (
    MERGED,
    SHARD_ROWS,
    clear_passes,
    embed_pass,
    pass_dir,
    passes,
)
from realm_jax.index.embed import ArrayBlocks, BlockSource, CorpusEmbedder
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import ScannSearcher
from realm_jax.index.searcher import Searcher, emb_dtype
from realm_jax.index.store import IndexStore
from realm_jax.index.towers import prune_towers, save_tower
from realm_jax.run.checkpoints import Checkpoints, is_done, read_embedder_spec
from realm_jax.utils.devices import sync
from realm_jax.utils.turns import Turns

log = logging.getLogger(__name__)
# (phase, step): "restore", "embed", "embed:shard", "build", "publish:<part>", "published",
# "done".
PhaseFn = Callable[[str, int], None]


@dataclasses.dataclass(frozen=True)
class RefreshConfig:
    """Where to read, what to build, where to publish."""

    checkpoint_dir: str
    index_dir: str
    blocks: str  # a data.blocks store directory, or an .npz of input_ids / input_mask [N, L]
    searcher: str = "scann"  # "scann" (ScaNN; brute force below 8192 blocks) or "exact"
    emb_dtype: str = "float32"  # or "bfloat16": half the memory and disk
    batch_size: int = 256  # global embedding batch
    max_len: int = 288  # block length the tower sees (REALM: 288)
    keep: int = 3  # published indexes kept
    poll_seconds: float = 1.0
    progress: bool = True
    shard_rows: int = SHARD_ROWS  # blocks per embedding shard (the unit of resuming)
    # 0: the newest checkpoint first; n > 0: every checkpoint at a multiple of n steps, oldest
    # first (a swap schedule's), and after DONE the last checkpoint.
    in_order_every: int = 0


def load_blocks(path: str) -> BlockSource:
    """A block store directory (``data.blocks.BlockStore``) or an .npz of token arrays [N, L]."""
    if os.path.isdir(path):
        return BlockStore(path)
    if path.endswith(".npz") and os.path.isfile(path):
        with np.load(path) as z:
            types = z["token_type_ids"] if "token_type_ids" in z else None
            return ArrayBlocks(z["input_ids"], z["input_mask"], types)
    raise FileNotFoundError(f"{path}: neither a block store directory nor an .npz file")


def build_searcher(kind: str, block_emb: np.ndarray) -> Searcher:
    """A searcher of ``kind`` over block_emb [N, D] (ScaNN measures its recall while building)."""
    if kind == "scann":
        return ScannSearcher.build(block_emb)
    if kind == "exact":
        return ExactSearcher(block_emb)
    raise ValueError(f"searcher {kind!r}: expected 'scann' or 'exact'")


def pick_step(
    restorable: list[int], current: int, begun: list[int], done: bool, in_order_every: int = 0
) -> int | None:
    """The checkpoint to index next, or None: of the ``restorable`` steps (ascending) newer than
    the published index ``current`` (-1: none), the newest; but a pass ``begun`` for one of them
    is finished first (its shards are work already done). ``in_order_every``: until the trainer
    is ``done``, the oldest of them at a multiple of it (others are never indexed then)."""
    newer = [s for s in restorable if s > current]
    if in_order_every and not done:
        due = [s for s in newer if s % in_order_every == 0]
        return due[0] if due else None
    if not newer:
        return None
    begun = [s for s in begun if s in newer]
    return max(begun) if begun else newer[-1]


class Refresher:
    """Turns trainer checkpoints into published indexes, newest first (or in order), one at a
    time."""

    def __init__(
        self,
        config: RefreshConfig,
        blocks: BlockSource | None = None,
        on_phase: PhaseFn | None = None,
        embed: CorpusEmbedder | None = None,
        distributed: bool | None = None,
        turns: Turns | None = None,
    ):
        """``blocks`` and ``embed`` default to ``config.blocks`` and the checkpoint's tower.
        ``turns``: the default embedder's ``CorpusEmbedder.turns`` (shared with a train step).

        ``distributed``: share the work with the other processes of the ``jax.distributed`` job
        (default: when there are any); False runs alone, e.g. as a thread of one trainer process.
        """
        emb_dtype(config.emb_dtype)  # fail on a bad name before any work
        if distributed is None:
            distributed = jax.process_count() > 1
        self.process = (jax.process_index(), jax.process_count()) if distributed else (0, 1)
        self.config = config
        self.blocks = blocks if blocks is not None else load_blocks(config.blocks)
        self.checkpoints = Checkpoints(config.checkpoint_dir, read_only=True, alone=not distributed)
        self.store = IndexStore(config.index_dir, keep=config.keep)
        self.on_phase = on_phase or (lambda phase, step: None)
        self._embed = embed  # else built at the first refresh (the spec comes with checkpoints)
        self._turns = turns
        self.timings: list[dict] = []  # seconds per phase, one record per refresh

    def refresh(self, step: int) -> dict | None:
        """Indexes checkpoint ``step`` and publishes it; returns the index meta (process 0; the
        other processes embed their shards and return None)."""
        c, marks = self.config, {}
        primary = self.process[0] == 0

        def phase(name: str) -> None:
            marks[name] = time.perf_counter()
            self.on_phase(name, step)

        phase("restore")
        params = self.checkpoints.restore_embedder_params(step)
        if self._embed is None:
            module = read_embedder_spec(c.checkpoint_dir).module()
            self._embed = CorpusEmbedder(module, turns=self._turns)
        phase("embed")
        workdir = pass_dir(self.store.root, step)
        block_emb = embed_pass(
            self._embed, params, self.blocks, workdir, f"step {step}",
            batch_size=c.batch_size, max_len=c.max_len, dtype=emb_dtype(c.emb_dtype),
            shard_rows=c.shard_rows, progress=c.progress and primary,
            on_shard=lambda k: self.on_phase("embed:shard", step), process=self.process,
        )
        if not primary:
            sync(f"refresh:published:{step}", self.process[1])
            return None
        phase("build")
        searcher = build_searcher(c.searcher, block_emb)
        phase("publish")
        save_tower(self.store.root, step, params)  # queries of this index are embedded with it
        meta = self.store.publish(
            step, block_emb, searcher, on_phase=lambda part: self.on_phase(part, step),
            embeddings_file=os.path.join(workdir, MERGED),
        )
        clear_passes(self.store.root, upto=step)
        prune_towers(self.store)
        phase("published")
        sync(f"refresh:published:{step}", self.process[1])
        names = list(marks)
        timing = {a: marks[b] - marks[a] for a, b in zip(names[:-1], names[1:], strict=True)}
        self.timings.append(
            {"step": step, **timing, "total": marks["published"] - marks["restore"]}
        )
        log.info("published index %d: recall %s, seconds %s", step, meta["recall"], timing)
        return meta

    def next_step(self) -> tuple[int | None, bool]:
        """(the step to index now or None, whether the trainer is DONE), agreed by all processes.

        See ``pick_step``.
        """
        step, done = -1, False
        if self.process[0] == 0:
            done = is_done(self.config.checkpoint_dir)  # read first: no later step is missed
            current = self.store.latest_step()
            current = -1 if current is None else current
            picked = pick_step(self.checkpoints.all_steps(), current, passes(self.store.root),
                               done, self.config.in_order_every)
            step = -1 if picked is None else picked
        if self.process[1] > 1:
            from jax.experimental import multihost_utils

            step, done = (int(v) for v in multihost_utils.broadcast_one_to_all(
                np.array([step, done], np.int64)))
        return (None if step < 0 else step), bool(done)

    def run(self, stop: threading.Event | None = None, max_failures: int = 5) -> list[int]:
        """Refreshes until DONE (or ``stop``); returns the steps published by this run."""
        stop = stop or threading.Event()
        if self.process[0] == 0:
            self.store.recover()  # a killed predecessor's leftovers
        published, failures = [], 0
        while not stop.is_set():
            try:
                step, done = self.next_step()
                if step is not None:
                    self.refresh(step)
                    published.append(step)
                    failures = 0
                    continue
            except Exception:  # e.g. the trainer pruned a step while we listed or restored it
                failures += 1
                log.exception("refresh poll failed (%d in a row)", failures)
                if failures >= max_failures or self.process[1] > 1:
                    raise  # across processes a retry could fall out of step with the others
                stop.wait(self.config.poll_seconds)
                continue
            if done:
                current = self.store.latest_step()
                self.on_phase("done", current if current is not None else -1)
                break
            stop.wait(self.config.poll_seconds)
        return published


def run_refresher(config: RefreshConfig) -> list[int]:
    """Entry point of a refresher process: run until the trainer's DONE marker."""
    logging.basicConfig(level=logging.INFO)
    return Refresher(config).run()


class RefresherHandle:
    """A running refresher (thread or process): ``stop()`` ends it, ``join()`` waits for DONE."""

    def __init__(self, worker, stop: threading.Event | None):
        self.worker = worker
        self._stop = stop

    def is_alive(self) -> bool:
        return self.worker.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.worker.join(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Asks a thread to stop after its current refresh; terminates a process (SIGTERM)."""
        if self._stop is not None:
            self._stop.set()
        elif self.worker.is_alive():
            self.worker.terminate()
        self.worker.join(timeout)


def start_refresher(
    config: RefreshConfig,
    mode: str = "process",
    blocks: BlockSource | None = None,
    turns: Turns | None = None,
) -> RefresherHandle:
    """Starts a refresher in a new process (spawned: no forked JAX state) or a daemon thread.

    ``turns`` (thread only): its embedding batches take turns with whoever else holds it (the
    trainer's steps), so the process never needs both computations' memory at once.
    """
    if mode == "thread":
        stop = threading.Event()
        refresher = Refresher(config, blocks, distributed=False, turns=turns)  # not the job's
        worker = threading.Thread(target=refresher.run, args=(stop,), daemon=True, name="refresh")
        worker.start()
        return RefresherHandle(worker, stop)
    if mode == "process":
        worker = multiprocessing.get_context("spawn").Process(
            target=run_refresher, args=(config,), name="refresh"
        )
        worker.start()
        return RefresherHandle(worker, None)
    raise ValueError(f"refresher mode {mode!r}: expected 'process' or 'thread'")
