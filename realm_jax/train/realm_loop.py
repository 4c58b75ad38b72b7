"""A minimal REALM pre-training loop wired to the asynchronous refresh.

Each step: take the index in use from the watcher (a swap, never a wait), embed the step's masked
queries with the current params, retrieve candidates, build the batch (``data.pretraining``), run
the pmapped REALM step; every ``checkpoint_every`` steps save an orbax checkpoint (asynchronously)
for the refresher. Logs index step, staleness and the time spent getting the index per step.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.data.blocks import BlockStore
from realm_jax.data.pretraining import realm_batch
from realm_jax.data.salient_spans import MaskedSentence
from realm_jax.index.store import IndexStore
from realm_jax.index.watcher import IndexWatcher
from realm_jax.models.realm import RealmPretrainModel
from realm_jax.train.checkpoint import Checkpoints, EmbedderSpec, mark_done
from realm_jax.train.parallel import replicate, shard, unreplicate
from realm_jax.train.state import TrainState, bert_adamw
from realm_jax.train.steps import realm_step

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RealmLoopConfig:
    """Step count, batch shapes, checkpoint cadence and the refresh knobs."""

    num_steps: int = 40
    batch_size: int = 8  # masked queries per step (a multiple of the device count)
    num_candidates: int = 4  # K, the null document included
    query_len: int = 16
    cand_len: int = 48
    max_masks: int = 2
    learning_rate: float = 1e-4
    checkpoint_every: int = 4  # the refresher can only be as fresh as the checkpoints
    refresh_interval: int = 0  # swap an index in only once the one in use is this many steps old
    # (REALM's "30x stale" ablation: 30x this); 0 swaps as soon as a newer index is loaded
    max_staleness: int = 24  # the bound the run warns past; steps never wait on the index
    index_poll_seconds: float = 0.5
    first_index_timeout: float = 300.0  # start-up wait for the index of step 0
    min_step_seconds: float = 0.0  # pace steps (stands in for a real step's length in tests)


def query_embed_fn(model: RealmPretrainModel) -> Callable:
    """jit(params, query_ids [B, L]) -> Embed_input(x) [B, dim] (padding is id 0)."""

    def embed(params, query_ids):
        return model.apply(
            params,
            query_ids,
            (query_ids != 0).astype(jnp.int32),
            method=lambda m, ids, mask: m.retriever.embed_query(ids, mask),
        )

    return jax.jit(embed)


def train_realm(
    config: RealmLoopConfig,
    model: RealmPretrainModel,
    params: dict,
    blocks: BlockStore,
    queries: Sequence[MaskedSentence],
    checkpoint_dir: str,
    index_dir: str,
    on_step: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Runs ``config.num_steps`` REALM steps against the index the refresher keeps publishing
    in ``index_dir`` from this run's checkpoints; returns one log record per step."""
    c = config
    checkpoints = Checkpoints(
        checkpoint_dir, embedder_spec=EmbedderSpec.from_realm_config(model.config)
    )
    checkpoints.save(0, TrainState.create(params, bert_adamw(c.learning_rate, c.num_steps)))
    checkpoints.wait()
    watcher = IndexWatcher(IndexStore(index_dir), c.index_poll_seconds, c.refresh_interval)
    try:
        history = _run(
            c, model, params, blocks, queries, checkpoints, watcher, on_step or _log_step
        )
    finally:
        watcher.stop()
        checkpoints.wait()
        checkpoints.close()
    mark_done(checkpoint_dir)
    return history


def _run(c, model, params, blocks, queries, checkpoints, watcher, on_step) -> list[dict]:
    """The steps of ``train_realm`` (state 0 already checkpointed)."""
    state = TrainState.create(params, bert_adamw(c.learning_rate, c.num_steps))
    watcher.start().wait_for_first(c.first_index_timeout)
    step_fn = realm_step(model)
    embed = query_embed_fn(model)
    n_dev = jax.local_device_count()
    rngs = jax.random.split(jax.random.PRNGKey(0), n_dev)
    state = replicate(state)
    host_params = params
    history = []
    for step in range(c.num_steps):
        start = time.perf_counter()
        index = watcher.current(step)  # a reference swap at most
        index_wait = time.perf_counter() - start

        def search(query_ids, index=index, host_params=host_params):
            query_emb = np.asarray(embed(host_params, query_ids))
            return index.searcher.search(
                query_emb, min(c.num_candidates, index.searcher.num_blocks)
            )[1]

        rows = [queries[(step * c.batch_size + i) % len(queries)] for i in range(c.batch_size)]
        batch = realm_batch(
            blocks, rows, search, c.num_candidates, c.query_len, c.cand_len, max_masks=c.max_masks
        )
        state, metrics = step_fn(state, shard(batch, n_dev), rngs)
        host_params = unreplicate(state.params)
        if (step + 1) % c.checkpoint_every == 0:
            checkpoints.save(step + 1, unreplicate(state))  # the write runs in the background
        record = {
            "step": step,
            "index_step": index.step,
            "staleness": step - index.step,
            "index_wait_ms": 1000 * index_wait,
            "loss": float(unreplicate(metrics)["loss"]),
        }
        if (pause := c.min_step_seconds - (time.perf_counter() - start)) > 0:
            time.sleep(pause)
        record["step_seconds"] = time.perf_counter() - start
        if record["staleness"] > c.max_staleness:
            log.warning("step %d: index %d is %d steps stale (bound %d)", step, index.step,
                        record["staleness"], c.max_staleness)  # fmt: skip
        history.append(record)
        on_step(record)
    return history


def _log_step(record: dict) -> None:
    log.info(
        "step %(step)d index %(index_step)d staleness %(staleness)d "
        "index wait %(index_wait_ms).3f ms loss %(loss).4f",
        record,
    )
