"""REALM pre-training: salient-span MLM marginalised over the documents a refreshed index retrieves.

Each step masks salient spans of sentences x (``MaskedQueries``), embeds x with the index's own
query tower, retrieves the top-k blocks z by MIPS (never x's own block), puts the null document
first, and minimises -log sum_z p(z|x) p(y|x,z) (``losses.realm_mlm_loss``). The index is rebuilt
every ``index.refresh_every`` steps (``index.mode="sync"``) or by an asynchronous refresher that
re-embeds the corpus from the checkpoints (``"async"``, ``index/live.AsyncIndex``).

Batch keys: query_ids, query_mask [B, Lq]; cand_ids, cand_mask, cand_type_ids [B, K, Lc];
cand_valid [B, K] (candidate 0 is the null document); joint_ids, joint_mask, joint_type_ids
[B, K, Lj]; mlm_positions, mlm_targets, mlm_mask [B, max_masks].
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax import losses
from realm_jax.data import input_pipeline as ip
from realm_jax.data.blocks import BlockStore
from realm_jax.data.pretraining import realm_batch
from realm_jax.data.tokenization import Tokenizer
from realm_jax.evaluation import has_answer
from realm_jax.index.live import Snapshot, make_index
from realm_jax.index.published import source_index
from realm_jax.models.realm import QueryEncoder, RealmPretrainModel, query_tower
from realm_jax.openqa.answerer import question_ids
from realm_jax.run.checkpoints import mark_done
from realm_jax.run.config import resolve_config
from realm_jax.run.files import RunDir
from realm_jax.run.model_setup import create_state
from realm_jax.train.init import setup_stage
from realm_jax.train.loop import TrainLoop, mean_eval
from realm_jax.train.steps import make_eval_step, make_train_step
from realm_jax.utils.devices import AXIS, shard

METRICS = {
    "loss": ("nll_sum", "num_masks"),
    "retrieval_utility": ("retrieval_utility_sum", "num_masks"),
    "mlm_accuracy": ("mlm_correct_sum", "num_masks"),
    # The retriever's mass on the null document: rising if it learns that blocks do not help.
    "null_probability": ("null_probability_sum", "num_examples"),
}


def loss_fn(model: RealmPretrainModel, joint: bool = False, retriever_gradient: bool = True):
    """(params, batch, rngs, deterministic) -> REALM's marginal MLM loss and sums.

    ``retriever_gradient=False`` stops the gradient into f(x, z) (the control run): the encoder
    still learns from the retrieved documents, the retriever does not learn at all.
    """

    def loss(params, batch, rngs, deterministic):
        logits, mlm_logits = model.apply(
            params,
            *(batch[k] for k in ("query_ids", "query_mask", "cand_ids", "cand_mask")),
            *(batch[k] for k in ("cand_type_ids", "joint_ids", "joint_mask", "joint_type_ids")),
            batch["mlm_positions"],
            deterministic=deterministic,
            rngs=rngs,
        )
        if not retriever_gradient:
            logits = jax.lax.stop_gradient(logits)
        return losses.realm_mlm_loss(
            logits,
            batch["cand_valid"],
            mlm_logits,
            batch["mlm_targets"],
            batch["mlm_mask"],
            joint=joint,
            axis_name=AXIS,
        )

    return loss


def train_step(
    model: RealmPretrainModel, joint: bool = False, donate: bool = True,
    trainable: str | None = None, retriever_gradient: bool = True,
):
    """The pmapped REALM pre-training step (marginal MLM likelihood over K candidates)."""
    return make_train_step(loss_fn(model, joint, retriever_gradient), METRICS, donate, trainable)


def eval_step(model: RealmPretrainModel, joint: bool = False):
    """The pmapped REALM eval step: held-out loss, retrieval utility, MLM accuracy."""
    return make_eval_step(loss_fn(model, joint), METRICS)


@dataclasses.dataclass
class Retrieval:
    """Turns masked queries into REALM batches with a snapshot of the index."""

    config: ConfigDict
    store: BlockStore  # Z, the knowledge corpus
    query_store: BlockStore  # X, where the queries come from (Z itself unless data.target_corpus)
    encoder: QueryEncoder

    def tower(self, snapshot: Snapshot, params: dict) -> dict:
        """Queries are embedded by the index's own embedder (REALM's example generators do)."""
        shared = self.config.model.share_embedders and snapshot.tower is not None
        return snapshot.tower if shared else query_tower(params)

    def batch(self, snapshot: Snapshot, params: dict, masked) -> dict:
        r = self.config.realm
        tower = self.tower(snapshot, params)
        k = min(r.num_candidates, snapshot.searcher.num_blocks)
        search = lambda ids: snapshot.searcher.search(self.encoder(tower, ids), k)[1]
        own = [self.query_store.uid(q.block_index) for q in masked]  # never retrieve x's own
        return realm_batch(self.store, masked, search, r.num_candidates, r.query_len, r.cand_len,
                           max_masks=r.max_masks, query_uids=own)


def retrieval_recall(
    snapshot: Snapshot, tower: dict, encoder: QueryEncoder, store: BlockStore, tokenizer: Tokenizer,
    rows: list[dict], query_len: int, k: int = 5,
) -> float:
    """Percent of questions with an answer in the top-k blocks of ``snapshot`` (ORQA's recall)."""
    if not rows:
        return 0.0
    ids = question_ids(store, tokenizer, [r["question"] for r in rows], query_len)
    _, top = snapshot.searcher.search(encoder(tower, ids), min(k, snapshot.searcher.num_blocks))
    hits = [
        any(has_answer(store.text(int(b)), r["answers"]) for b in row if b >= 0)
        for row, r in zip(top, rows, strict=True)
    ]
    return 100.0 * float(np.mean(hits))


def recall_questions(config: ConfigDict) -> list[dict]:
    """``eval.recall_questions`` ("dataset[:split]"): where zero-shot recall is tracked."""
    if not config.eval.recall_questions:
        return []
    dataset, _, split = config.eval.recall_questions.partition(":")
    return ip.load_questions(dataset, split or "dev")[: config.eval.num_questions]


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """REALM pre-training against an index refreshed every few hundred steps (sync or async)."""
    config = resolve_config(config, workdir, "realm")
    tokenizer, store, model, params, spec = setup_stage(config, workdir, spans=True)
    r, run = config.realm, RunDir(workdir)
    target = ip.target_config(config)  # X != Z (CC-News): queries from their own block store
    query_store = store
    if target is not None:
        query_store = ip.prepare_blocks(target, ip.blocks_dir(target, workdir), tokenizer, True)
    queries = ip.MaskedQueries(query_store, tokenizer, config)
    encoder = QueryEncoder(spec)
    retrieval = Retrieval(config, store, query_store, encoder)
    index = make_index(config.index, run.index, spec, store, r.cand_len, run.checkpoints,
                       config.progress, config.checkpoint_every_steps)
    seed_index = source_index(config.init.ict_workdir, r.cand_len, config.data.blocks_dir)
    recall_rows = recall_questions(config)
    p_train_step = train_step(model, r.joint_marginal, trainable=config.optim.trainable,
                              retriever_gradient=r.retriever_gradient)
    p_eval_step = eval_step(model, r.joint_marginal)

    def evaluate(step: int, params: dict) -> dict:
        snapshot = index.snapshot
        batches = [retrieval.batch(snapshot, params, queries(i, ip.EVAL))
                   for i in range(config.eval.num_batches)]
        metrics = mean_eval(p_eval_step, params, batches) | {"index_step": snapshot.step}
        if recall_rows:
            tower = retrieval.tower(snapshot, params)
            metrics["recall_at_5"] = retrieval_recall(snapshot, tower, encoder, store, tokenizer,
                                                      recall_rows, r.query_len)
        return metrics

    state = create_state(config, params)
    del params  # the host copy: the loop's replicated state holds them from here
    async_index = config.index.mode == "async"  # its refresher reads checkpoints, step 0 too
    with contextlib.closing(index), TrainLoop(config, workdir, "realm", state, spec,
                                              save_initial=async_index) as loop:
        index.start(loop.start, loop.params, seed_index if loop.start == 0 else None)
        loop.evaluate_at_start(evaluate)
        for step in loop.steps():
            params = loop.params  # device 0's copy: waits for the step before, so it is not timed
            t0 = time.perf_counter()
            snapshot = index.current(step, params)  # async: a reference swap (may wait)
            wait_ms = 1e3 * (time.perf_counter() - t0)
            batch = retrieval.batch(snapshot, params, queries(step))
            # Staleness: how many updates the document embeddings lag behind the trained params.
            extras = {"index_step": snapshot.step, "staleness": step - snapshot.step,
                      "index_ms": wait_ms}
            state, metrics = index.run_step(p_train_step, loop.state, shard(batch), loop.rng)
            loop.record(state, metrics, extras)
            if loop.done:
                if jax.process_index() == 0:
                    mark_done(run.checkpoints)  # the refresher indexes this last step, then exits
                if config.index.publish_final or async_index:
                    index.finish(loop.step, loop.params)
            loop.evaluate_if_due(evaluate)
        return loop.final_metrics(evaluate)
