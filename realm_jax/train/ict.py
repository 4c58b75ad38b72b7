"""ORQA's Inverse Cloze Task: the retriever's warm start, and the index the next stages start from.

A sentence of a block is the query, the rest of its block (the sentence itself removed with
probability 0.9, else left in: ``data/ict.py``) the positive, every other block of the global
batch a negative (``losses.ict_loss``).

Batch keys: query_ids, query_mask [B, Lq]; block_ids, block_mask, block_type_ids [B, Lb].
"""

from __future__ import annotations

from ml_collections import ConfigDict

from realm_jax import losses
from realm_jax.data.input_pipeline import EVAL, IctBatches
from realm_jax.index.live import SyncIndex
from realm_jax.models.retriever import Retriever
from realm_jax.run.config import resolve_config
from realm_jax.run.files import RunDir
from realm_jax.run.model_setup import create_state
from realm_jax.train.init import setup_stage
from realm_jax.train.loop import TrainLoop, mean_eval
from realm_jax.train.steps import make_eval_step, make_train_step
from realm_jax.utils.devices import AXIS

METRICS = {"loss": ("loss_sum", "num_examples"), "accuracy": ("accuracy_sum", "num_examples")}


def loss_fn(model: Retriever):
    """(params, batch, rngs, deterministic) -> ICT loss and sums, negatives from all devices."""

    def loss(params, batch, rngs, deterministic):
        kw = dict(deterministic=deterministic, rngs=rngs)
        query_emb = model.apply(
            params, batch["query_ids"], batch["query_mask"], method=model.embed_query, **kw
        )
        block_emb = model.apply(
            params,
            batch["block_ids"],
            batch["block_mask"],
            batch["block_type_ids"],
            method=model.embed_docs,
            **kw,
        )
        return losses.ict_loss(query_emb, block_emb, axis_name=AXIS)

    return loss


def train_step(model: Retriever, donate: bool = True):
    """The pmapped ICT train step (in-batch softmax over the global batch)."""
    return make_train_step(loss_fn(model), METRICS, donate)


def eval_step(model: Retriever):
    """The pmapped ICT eval step: held-out loss and accuracy, no dropout."""
    return make_eval_step(loss_fn(model), METRICS)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """Trains the retriever with ICT; publishes the final retriever's index for the next stages."""
    config = resolve_config(config, workdir, "ict")
    _, store, model, params, spec = setup_stage(config, workdir)
    batches = IctBatches(store, config)
    held_out = [batches(i, EVAL) for i in range(config.eval.num_batches)]
    p_train_step, p_eval_step = train_step(model), eval_step(model)
    evaluate = lambda step, params: mean_eval(p_eval_step, params, held_out)
    state = create_state(config, params)
    del params  # the host copy: the loop's replicated state holds them from here
    with TrainLoop(config, workdir, "ict", state, spec) as loop:
        loop.evaluate_at_start(evaluate)
        for _, batch in loop.prefetch(batches):
            state, metrics = p_train_step(loop.state, batch, loop.rng)
            loop.record(state, metrics)
            if loop.done and config.index.publish_final:
                index = SyncIndex(RunDir(workdir).index, spec, store, config.index,
                                  config.ict.block_len, config.progress)
                index.build(loop.step, loop.params)
            loop.evaluate_if_due(evaluate)
        return loop.final_metrics(evaluate)
