"""Pmapped train and eval steps for ICT, REALM pre-training and open-QA fine-tuning.

Every step is ``step(state, batch, rng) -> (new_state, metrics)``, compiled once by
``jax.pmap(..., axis_name="batch")``: leaves of ``state`` carry a leading device axis
(``parallel.replicate``), ``batch`` leaves ``[devices, per_device, ...]`` (``parallel.shard``) and
``rng`` one key per device. Each device's loss is its share of the *global* mean (local sum over
the psum'med count, times the device count), so pmean'ed gradients and psum'med metrics equal a
one-device run on the same global batch.

Batch keys (all static shapes):
  ict:    query_ids, query_mask [B, Lq]; block_ids, block_mask, block_type_ids [B, Lb]
  realm:  query_ids, query_mask [B, Lq]; cand_ids, cand_mask, cand_type_ids [B, K, Lc];
          cand_valid [B, K] (candidate 0 is the null document); joint_ids, joint_mask,
          joint_type_ids [B, K, Lj]; mlm_positions, mlm_targets, mlm_mask [B, max_masks]
  mlm:    joint_ids, joint_mask, joint_type_ids [B, Lj]; mlm_positions, mlm_targets, mlm_mask
          [B, max_masks] (the REALM joint input with one context per example)
  openqa: question_ids, question_mask [B, Lq]; beam_emb [B, beam, D]; beam_valid, beam_correct
          [B, beam]; reader_ids, reader_mask, reader_type_ids, reader_block_mask [B, R, Lr];
          gold_starts, gold_ends [B, R, num_answers] (-1 pads)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from realm_jax import losses
from realm_jax.models.realm import EncoderMlmModel, OpenQAModel, RealmPretrainModel
from realm_jax.models.retriever import Retriever
from realm_jax.train.parallel import AXIS
from realm_jax.train.state import TrainState, param_path, trainable_predicate

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]

# metric name -> (psum'med numerator key, psum'med denominator key)
ICT_METRICS = {"loss": ("loss_sum", "num_examples"), "accuracy": ("accuracy_sum", "num_examples")}
REALM_METRICS = {
    "loss": ("nll_sum", "num_masks"),
    "retrieval_utility": ("retrieval_utility_sum", "num_masks"),
    "mlm_accuracy": ("mlm_correct_sum", "num_masks"),
    # The retriever's mass on the null document: rising if it learns that blocks do not help.
    "null_probability": ("null_probability_sum", "num_examples"),
}
MLM_METRICS = {"loss": ("nll_sum", "num_masks"), "mlm_accuracy": ("mlm_correct_sum", "num_masks")}
OPENQA_METRICS = {
    "loss": ("loss_sum", "num_examples"),
    "retriever_loss": ("retriever_loss_sum", "num_examples"),
    "reader_loss": ("reader_loss_sum", "num_examples"),
    "exact_match": ("exact_match_sum", "num_examples"),
    "reader_oracle": ("reader_oracle_sum", "num_examples"),
    "retrieval_recall": ("retrieval_recall_sum", "num_examples"),
}


def ict_loss_fn(model: Retriever) -> LossFn:
    """(params, batch, rngs, deterministic) -> ICT loss and sums, negatives from all devices."""

    def loss_fn(params, batch, rngs, deterministic):
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

    return loss_fn


def mlm_loss_fn(model: EncoderMlmModel) -> LossFn:
    """(params, batch, rngs, deterministic) -> the encoder's MLM loss on one context per example."""

    def loss_fn(params, batch, rngs, deterministic):
        logits = model.apply(
            params,
            *(batch[k] for k in ("joint_ids", "joint_mask", "joint_type_ids", "mlm_positions")),
            deterministic=deterministic,
            rngs=rngs,
        )
        return losses.mlm_loss(logits, batch["mlm_targets"], batch["mlm_mask"])

    return loss_fn


def realm_loss_fn(
    model: RealmPretrainModel, joint: bool = False, retriever_gradient: bool = True
) -> LossFn:
    """(params, batch, rngs, deterministic) -> REALM's marginal MLM loss and sums.

    ``retriever_gradient=False`` stops the gradient into f(x, z) (the control run): the encoder
    still learns from the retrieved documents, the retriever does not learn at all.
    """

    def loss_fn(params, batch, rngs, deterministic):
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
        )

    return loss_fn


def openqa_loss_fn(model: OpenQAModel) -> LossFn:
    """(params, batch, rngs, deterministic) -> ORQA's retriever + reader loss and sums."""

    def loss_fn(params, batch, rngs, deterministic):
        beam_logits, reader_logits, span_mask, starts, ends = model.apply(
            params,
            *(batch[k] for k in ("question_ids", "question_mask", "beam_emb", "reader_ids")),
            *(batch[k] for k in ("reader_mask", "reader_type_ids", "reader_block_mask")),
            deterministic=deterministic,
            rngs=rngs,
        )
        gold = (batch["gold_starts"], batch["gold_ends"])
        reader_correct = losses.correct_spans(starts, ends, *gold)  # [B, R, S]
        return losses.openqa_loss(
            beam_logits,
            batch["beam_correct"],
            batch["beam_valid"],
            reader_logits,
            span_mask,
            reader_correct,
        )

    return loss_fn


def _global_metrics(sums: dict[str, jax.Array], spec: dict[str, tuple[str, str]]) -> dict:
    """psum every batch sum over devices, then divide into the global means named by ``spec``."""
    totals = {k: jax.lax.psum(v, AXIS) for k, v in sums.items() if not k.startswith("example_")}
    out = {name: losses.div_no_nan(totals[num], totals[den]) for name, (num, den) in spec.items()}
    counts = {den for _, den in spec.values()}
    return out | {k: totals[k] for k in counts}


def _dropout_rngs(rng: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
    rng = jax.random.fold_in(jax.random.fold_in(rng, step), jax.lax.axis_index(AXIS))
    return {"dropout": rng}


def freeze(params, trainable: Callable[[str], bool]):
    """``params`` with the gradient stopped at every leaf ``trainable`` rejects (so XLA drops
    the backward pass below the lowest trainable layer)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p if trainable(param_path(path)) else jax.lax.stop_gradient(p), params
    )


def make_train_step(
    loss_fn: LossFn, spec: dict[str, tuple[str, str]], donate: bool = True,
    trainable: str | None = None,
) -> Callable:  # fmt: skip
    """Pmapped ``step(state, batch, rng) -> (new_state, metrics)`` minimising ``spec['loss']``.

    ``trainable``: a regex over parameter paths (``trainable_predicate``); the others get no
    gradient (the optimiser also leaves them undecayed: ``state.bert_adamw(trainable=...)``).
    """
    num_key, den_key = spec["loss"]
    is_trainable = trainable_predicate(trainable)

    def step(state: TrainState, batch: dict, rng: jax.Array):
        rngs = _dropout_rngs(rng, state.step)

        def objective(params):
            _, sums = loss_fn(freeze(params, is_trainable), batch, rngs, deterministic=False)
            # This device's share of the global mean; pmean below turns shares into the mean.
            global_count = jax.lax.psum(sums[den_key], AXIS)
            scale = jax.lax.psum(1, AXIS) / jnp.maximum(global_count, 1.0)
            return sums[num_key] * scale, sums

        grads, sums = jax.grad(objective, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        return state.apply_gradients(grads), _global_metrics(sums, spec)

    return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,) if donate else ())


def make_eval_step(loss_fn: LossFn, spec: dict[str, tuple[str, str]]) -> Callable:
    """Pmapped ``eval_step(params, batch) -> metrics`` (no dropout, no update)."""

    def step(params, batch):
        _, sums = loss_fn(params, batch, {}, deterministic=True)
        return _global_metrics(sums, spec)

    return jax.pmap(step, axis_name=AXIS)


def ict_step(model: Retriever, donate: bool = True) -> Callable:
    """The pmapped ICT train step (in-batch softmax over the global batch)."""
    return make_train_step(ict_loss_fn(model), ICT_METRICS, donate)


def realm_step(
    model: RealmPretrainModel, joint: bool = False, donate: bool = True,
    trainable: str | None = None, retriever_gradient: bool = True,
) -> Callable:  # fmt: skip
    """The pmapped REALM pre-training step (marginal MLM likelihood over K candidates)."""
    loss_fn = realm_loss_fn(model, joint, retriever_gradient)
    return make_train_step(loss_fn, REALM_METRICS, donate, trainable)


def mlm_step(model: EncoderMlmModel, donate: bool = True, trainable: str | None = None):
    """The pmapped MLM warm-start step of the knowledge-augmented encoder."""
    return make_train_step(mlm_loss_fn(model), MLM_METRICS, donate, trainable)


def openqa_step(model: OpenQAModel, donate: bool = True) -> Callable:
    """The pmapped open-QA fine-tuning step (ORQA's retriever + reader marginal losses)."""
    return make_train_step(openqa_loss_fn(model), OPENQA_METRICS, donate)
