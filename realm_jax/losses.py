"""Marginal likelihoods of REALM (MLM pre-training) and ORQA (open-QA), and ICT's in-batch loss.

REALM: log p(y|x) = logsumexp_z [log p(z|x) + sum_j log p(y_j|x,z)] over the K candidates.
All functions are pure; masks are applied with ``where`` (never by adding -inf), so padded
entries get exactly zero probability and zero gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# A logit no real score reaches; finite so that sums and gradients stay finite.
MASKED_LOGIT = -1e9


def div_no_nan(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, and 0 where den is 0 (tf.math.divide_no_nan)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def device_share(total: jax.Array, count: jax.Array, axis_name: str) -> jax.Array:
    """This device's part of the mean over every device's examples, ``total / count`` summed over
    ``axis_name``: pmean of the parts (and of their gradients) is that global mean, as a one-device
    run on the whole batch would compute it."""
    global_count = jax.lax.psum(count, axis_name)
    scale = jax.lax.psum(1, axis_name) / jnp.maximum(global_count, 1.0)
    return total * scale


def _mean_loss(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
    """``total / count`` (0 without a count), or this device's share of it over ``axis_name``."""
    if axis_name is None:
        return div_no_nan(total, count)
    return device_share(total, count, axis_name)


def masked_log_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """log_softmax over the last axis restricted to ``mask``; masked entries get ~MASKED_LOGIT."""
    return jax.nn.log_softmax(jnp.where(mask, logits.astype(jnp.float32), MASKED_LOGIT), axis=-1)


def mlm_targets_from_labels(
    labels: jax.Array, max_masks: int, ignore_index: int = -100
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """labels [batch, seq] (-100: not masked) -> positions, targets, mask [batch, max_masks].

    Keeps the first ``max_masks`` masked positions, as the original featurizer's truncate_or_pad.
    """
    is_mask = labels != ignore_index
    order = jnp.argsort(~is_mask, axis=-1, stable=True)  # masked positions first, in order
    positions = order[:, :max_masks]
    mask = jnp.take_along_axis(is_mask, positions, axis=-1)
    targets = jnp.where(mask, jnp.take_along_axis(labels, positions, axis=-1), 0)
    return jnp.where(mask, positions, 0), targets, mask


def realm_mlm_loss(
    retrieval_logits: jax.Array,  # [batch, k] f(x, z); candidate 0 is the null document
    cand_mask: jax.Array,  # [batch, k] 1 for real candidates, 0 for padding
    mlm_logits: jax.Array,  # [batch, k, num_masks, vocab]
    mlm_targets: jax.Array,  # [batch, num_masks]
    mlm_mask: jax.Array,  # [batch, num_masks] 1 for real masks
    joint: bool = False,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """REALM's negative marginal log-likelihood per masked token -> (loss [], metrics).

    ``joint=False`` (the original code and the HF port) marginalises every masked token over z on
    its own; ``joint=True`` is the paper's p(y|z,x) = prod_j p(y_j|z,x) inside the sum over z. Both
    are divided by the number of real masks in the batch (over all devices of ``axis_name``
    inside pmap: the loss is then this device's ``device_share``). Metrics hold per-example values
    (``example_*`` [batch]) and batch sums (``*_sum``) that psum across devices.
    """
    mask = mlm_mask.astype(jnp.float32)  # [b, m]
    log_pz = masked_log_softmax(retrieval_logits, cand_mask.astype(bool))  # [b, k]
    log_probs = jax.nn.log_softmax(mlm_logits.astype(jnp.float32), axis=-1)  # [b, k, m, v]
    targets = jnp.broadcast_to(mlm_targets[:, None, :, None], (*log_probs.shape[:3], 1))
    gold = jnp.take_along_axis(log_probs, targets, axis=-1)[..., 0]  # [b, k, m] log p(y_j|z,x)
    if joint:
        log_marginal = jax.nn.logsumexp(log_pz + jnp.sum(gold * mask[:, None], -1), axis=1)  # [b]
    else:
        per_mask = jax.nn.logsumexp(log_pz[..., None] + gold, axis=1)  # [b, m]
        log_marginal = jnp.sum(per_mask * mask, -1)  # [b]
    null_log_prob = jnp.sum(gold[:, 0] * mask, -1)  # [b] the null document alone
    utility = log_marginal - null_log_prob  # [b]
    # MLM accuracy under the marginal predictive distribution sum_z p(z|x) p(y_j|z,x).
    predictive = jax.nn.logsumexp(log_pz[:, :, None, None] + log_probs, axis=1)  # [b, m, v]
    correct = (jnp.argmax(predictive, -1) == mlm_targets).astype(jnp.float32) * mask  # [b, m]
    num_masks = jnp.sum(mask, -1)  # [b]
    metrics = {
        "example_loss": div_no_nan(-log_marginal, num_masks),
        "example_retrieval_utility": div_no_nan(utility, num_masks),
        "example_mlm_accuracy": div_no_nan(jnp.sum(correct, -1), num_masks),
        "nll_sum": -jnp.sum(log_marginal),
        "retrieval_utility_sum": jnp.sum(utility),
        "mlm_correct_sum": jnp.sum(correct),
        "null_probability_sum": jnp.sum(jnp.exp(log_pz[:, 0])),  # p(null document | x)
        "num_masks": jnp.sum(num_masks),
        "num_examples": jnp.asarray(mask.shape[0], jnp.float32),
    }
    return _mean_loss(metrics["nll_sum"], metrics["num_masks"], axis_name), metrics


def gold_log_probs(mlm_logits: jax.Array, mlm_targets: jax.Array) -> jax.Array:
    """log p(y_j | ...) of each target: logits [..., num_masks, vocab], targets [..., num_masks]."""
    log_probs = jax.nn.log_softmax(mlm_logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_probs, mlm_targets[..., None], axis=-1)[..., 0]


def mlm_loss(
    mlm_logits: jax.Array,  # [batch, num_masks, vocab] one context per example
    mlm_targets: jax.Array,  # [batch, num_masks]
    mlm_mask: jax.Array,  # [batch, num_masks] 1 for real masks
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Plain masked-LM cross-entropy per masked token (the encoder's warm start) -> (loss, sums);
    inside pmap with ``axis_name``, the loss is this device's share of the global mean."""
    mask = mlm_mask.astype(jnp.float32)
    gold = gold_log_probs(mlm_logits, mlm_targets)  # [b, m]
    correct = (jnp.argmax(mlm_logits, -1) == mlm_targets).astype(jnp.float32) * mask
    num_masks = jnp.sum(mask, -1)
    metrics = {
        "example_gold_log_prob": gold * mask,  # [b, m]
        "nll_sum": -jnp.sum(gold * mask),
        "mlm_correct_sum": jnp.sum(correct),
        "num_masks": jnp.sum(num_masks),
    }
    return _mean_loss(metrics["nll_sum"], metrics["num_masks"], axis_name), metrics


def marginal_log_loss(
    logits: jax.Array, is_correct: jax.Array, valid: jax.Array | None = None
) -> jax.Array:
    """ORQA: -log sum_{correct} p over the last axis [..., n] -> [...]; 0 when none is correct."""
    valid = jnp.ones_like(is_correct, bool) if valid is None else valid.astype(bool)
    correct = is_correct.astype(bool) & valid
    logits = jnp.where(valid, logits.astype(jnp.float32), MASKED_LOGIT)
    log_denominator = jax.nn.logsumexp(logits, axis=-1)
    log_numerator = jax.nn.logsumexp(jnp.where(correct, logits, MASKED_LOGIT), axis=-1)
    return jnp.where(jnp.any(correct, -1), log_denominator - log_numerator, 0.0)


def correct_spans(
    starts: jax.Array, ends: jax.Array, gold_starts: jax.Array, gold_ends: jax.Array
) -> jax.Array:
    """Candidate spans [S] equal to any gold span [..., num_answers] (-1 pads) -> [..., S] bool."""
    hit = (starts == gold_starts[..., None]) & (ends == gold_ends[..., None])  # [..., a, S]
    return jnp.any(hit & (gold_starts[..., None] >= 0), axis=-2)


def openqa_loss(
    retriever_logits: jax.Array,  # [batch, beam]
    retriever_correct: jax.Array,  # [batch, beam] block contains an answer
    beam_mask: jax.Array,  # [batch, beam] 1 for real retrievals
    reader_logits: jax.Array,  # [batch, reader_beam, S] (retriever logit included)
    span_mask: jax.Array,  # [batch, reader_beam, S]
    reader_correct: jax.Array,  # [batch, reader_beam, S]
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ORQA's loss: retriever + reader marginal log-losses, each zero if nothing is correct;
    the mean over questions (inside pmap with ``axis_name``: this device's share of it)."""
    b = reader_logits.shape[0]
    retriever_loss = marginal_log_loss(retriever_logits, retriever_correct, beam_mask)  # [b]
    flat = lambda x: x.reshape(b, -1)
    reader_loss = marginal_log_loss(flat(reader_logits), flat(reader_correct), flat(span_mask))
    best = jnp.argmax(jnp.where(flat(span_mask), flat(reader_logits), MASKED_LOGIT), -1)  # [b]
    exact = jnp.take_along_axis(flat(reader_correct & span_mask), best[:, None], -1)[:, 0]
    reader_beam = reader_logits.shape[1]
    metrics = {
        "example_retriever_loss": retriever_loss,
        "example_reader_loss": reader_loss,
        "loss_sum": jnp.sum(retriever_loss + reader_loss),
        "retriever_loss_sum": jnp.sum(retriever_loss),
        "reader_loss_sum": jnp.sum(reader_loss),
        "exact_match_sum": jnp.sum(exact.astype(jnp.float32)),
        "reader_oracle_sum": jnp.sum(
            jnp.any(flat(reader_correct & span_mask), -1), dtype=jnp.float32
        ),
        "retrieval_recall_sum": jnp.sum(
            jnp.any(retriever_correct[:, :reader_beam] & beam_mask[:, :reader_beam], -1),
            dtype=jnp.float32,
        ),
        "num_examples": jnp.asarray(b, jnp.float32),
    }
    if axis_name is None:
        return metrics["loss_sum"] / b, metrics
    return device_share(metrics["loss_sum"], metrics["num_examples"], axis_name), metrics


def ict_loss(
    query_emb: jax.Array, block_emb: jax.Array, axis_name: str | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ICT in-batch softmax over all blocks of the global batch (gathered over ``axis_name``).

    query_emb, block_emb [batch, dim]: query i's positive is block i, every other block a negative.
    The loss is the mean over queries (with ``axis_name``: this device's share of the global mean).
    """
    b = query_emb.shape[0]
    labels = jnp.arange(b)
    if axis_name is not None:
        block_emb = jax.lax.all_gather(block_emb, axis_name, tiled=True)  # [devices * b, dim]
        labels = labels + jax.lax.axis_index(axis_name) * b
    logits = jnp.einsum("bd,nd->bn", query_emb, block_emb).astype(jnp.float32)  # [b, global]
    log_probs = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(log_probs, labels[:, None], -1)[:, 0]  # [b]
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    metrics = {
        "example_loss": nll,
        "loss_sum": jnp.sum(nll),
        "accuracy_sum": jnp.sum(correct),
        "num_examples": jnp.asarray(b, jnp.float32),
    }
    if axis_name is None:
        return jnp.mean(nll), metrics
    return device_share(metrics["loss_sum"], metrics["num_examples"], axis_name), metrics
