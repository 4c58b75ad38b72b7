"""REALM, ORQA and ICT losses against float64 references, the paper's retriever gradient, edges.

Tolerance: the losses run in float32 on O(1) logits, the references in float64; 1e-5 absolute is
~100 float32 ulps of the values compared, far below any formula error (those are O(0.1)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp, softmax

from realm_jax.losses import (
    correct_spans,
    ict_loss,
    marginal_log_loss,
    masked_log_softmax,
    mlm_targets_from_labels,
    openqa_loss,
    realm_mlm_loss,
)
from realm_jax.utils.devices import shard

B, K, M, V = 3, 4, 5, 11
TOL = dict(rtol=1e-5, atol=1e-5)


def _realm_inputs(seed, cand_valid=None, mlm_valid=None):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, K)).astype(np.float32) * 2
    mlm_logits = rng.normal(size=(B, K, M, V)).astype(np.float32) * 2
    targets = rng.integers(0, V, (B, M))
    cand_valid = np.ones((B, K), bool) if cand_valid is None else cand_valid
    mlm_valid = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    return logits, cand_valid, mlm_logits, targets, mlm_valid


def _reference(logits, cand_valid, mlm_logits, targets, mlm_valid):
    """float64: p(z|x) [b,k], p(y_j|z,x) [b,k,m] and the masks, straight from the definitions."""
    pz = softmax(np.where(cand_valid, logits.astype(np.float64), -np.inf), axis=-1)
    log_p = log_softmax(mlm_logits.astype(np.float64), axis=-1)
    py = np.exp(np.take_along_axis(log_p, targets[:, None, :, None], -1)[..., 0])
    return pz, py, mlm_valid.astype(np.float64)


@pytest.mark.parametrize("joint", [False, True])
def test_realm_loss_and_metrics_match_reference(joint):
    args = _realm_inputs(0, cand_valid=np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0]], bool))
    pz, py, mask = _reference(*args)
    if joint:  # log sum_z p(z|x) prod_j p(y_j|z,x), one term per example
        log_marg = np.log(np.sum(pz * np.prod(np.where(mask[:, None], py, 1.0), -1), 1))
        null = np.sum(np.log(py[:, 0]) * mask, -1)
    else:  # sum_j log sum_z p(z|x) p(y_j|z,x)
        log_marg = np.sum(np.log(np.sum(pz[..., None] * py, 1)) * mask, -1)
        null = np.sum(np.log(py[:, 0]) * mask, -1)
    loss, metrics = realm_mlm_loss(*args, joint=joint)
    np.testing.assert_allclose(loss, -log_marg.sum() / mask.sum(), **TOL)
    np.testing.assert_allclose(metrics["example_loss"], -log_marg / mask.sum(-1), **TOL)
    np.testing.assert_allclose(
        metrics["retrieval_utility_sum"], np.sum(log_marg - null), rtol=1e-5, atol=1e-4
    )
    predictive = np.einsum("bk,bkmv->bmv", pz, softmax(args[2].astype(np.float64), axis=-1))
    correct = (predictive.argmax(-1) == args[3]) * mask
    assert float(metrics["mlm_correct_sum"]) == correct.sum()
    assert float(metrics["num_masks"]) == mask.sum() == 9
    np.testing.assert_allclose(metrics["null_probability_sum"], pz[:, 0].sum(), **TOL)


@pytest.mark.parametrize("joint", [False, True])
def test_retriever_gradient_is_the_papers_r(joint):
    """d log p(y|x) / d f(x,z) = r(z) = [p(y|z,x) / p(y|x) - 1] p(z|x) (paper 2.4)."""
    cand_valid = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1]], bool)
    logits, cand_valid, mlm_logits, targets, mlm_valid = _realm_inputs(1, cand_valid)
    pz, py, mask = _reference(logits, cand_valid, mlm_logits, targets, mlm_valid)

    def log_likelihood(f):  # sum_b log p(y_b|x_b): the loss times the number of masks
        loss, metrics = realm_mlm_loss(f, cand_valid, mlm_logits, targets, mlm_valid, joint=joint)
        return -loss * metrics["num_masks"]

    grad = jax.grad(log_likelihood)(jnp.asarray(logits))
    if joint:  # y = all masks of the example: p(y|z,x) = prod_j p(y_j|z,x)
        p_y_z = np.prod(np.where(mask[:, None], py, 1.0), -1)  # [b, k]
        r = (p_y_z / np.sum(pz * p_y_z, 1, keepdims=True) - 1) * pz
    else:  # the original code marginalises each mask alone: sum_j r_j(z)
        p_y = np.sum(pz[..., None] * py, 1, keepdims=True)  # [b, 1, m]
        r = np.sum((py / p_y - 1) * pz[..., None] * mask[:, None], -1)
    np.testing.assert_allclose(grad, r, **TOL)
    assert np.all(np.asarray(grad)[~cand_valid] == 0.0)  # padded candidates: no gradient at all
    assert np.abs(r).max() > 1e-2  # the check is not vacuous


def test_only_the_null_document():
    """K = 1 (or every other candidate padded): plain MLM cross-entropy, zero retrieval utility."""
    logits, _, mlm_logits, targets, mlm_valid = _realm_inputs(2)
    log_p = log_softmax(mlm_logits[:, 0].astype(np.float64), -1)
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    expected = np.sum(nll * mlm_valid) / mlm_valid.sum()
    for cands in (slice(0, 1), slice(None)):
        valid = np.zeros((B, K), bool)
        valid[:, 0] = True
        loss, metrics = realm_mlm_loss(
            logits[:, cands], valid[:, cands], mlm_logits[:, cands], targets, mlm_valid
        )
        np.testing.assert_allclose(loss, expected, **TOL)
        np.testing.assert_allclose(metrics["retrieval_utility_sum"], 0.0, atol=1e-5)


def test_padded_candidates_get_zero_probability():
    valid = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    logits, _, mlm_logits, targets, mlm_valid = _realm_inputs(3)
    p = np.exp(masked_log_softmax(jnp.asarray(logits) + 50.0 * ~valid, valid))
    assert np.all(p[~valid] == 0.0)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    loss, _ = realm_mlm_loss(logits, valid, mlm_logits, targets, mlm_valid)
    # Whatever sits in a padded slot (huge scores, other MLM logits) changes nothing.
    noisy_logits = np.where(valid, logits, 1e4).astype(np.float32)
    noisy_mlm = np.where(valid[..., None, None], mlm_logits, -mlm_logits * 7).astype(np.float32)
    noisy_loss, _ = realm_mlm_loss(noisy_logits, valid, noisy_mlm, targets, mlm_valid)
    np.testing.assert_array_equal(loss, noisy_loss)
    grad = jax.grad(
        lambda x: realm_mlm_loss(logits, valid, x, targets, mlm_valid)[0]
    )(jnp.asarray(mlm_logits))
    assert np.all(np.asarray(grad)[~valid] == 0.0)


def test_masks_beyond_max_masks_are_dropped():
    """More [MASK]s than max_masks: the first max_masks are scored, the rest never reach it."""
    labels = np.full((2, 12), -100)
    labels[0, [2, 3, 5, 8, 9]] = [10, 11, 12, 13, 14]  # five masks, max_masks = 3
    labels[1, [4]] = [7]
    positions, targets, mask = mlm_targets_from_labels(jnp.asarray(labels), max_masks=3)
    np.testing.assert_array_equal(positions, [[2, 3, 5], [4, 0, 0]])
    np.testing.assert_array_equal(targets, [[10, 11, 12], [7, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 2)).astype(np.float32)
    mlm_logits = rng.normal(size=(2, 2, 3, 20)).astype(np.float32)
    loss, metrics = realm_mlm_loss(logits, np.ones((2, 2)), mlm_logits, targets, mask)
    assert float(metrics["num_masks"]) == 4
    # Padding slots (mask 0) may hold any target and any logits.
    other = np.asarray(targets).copy()
    other[1, 1:] = [19, 3]
    junk = mlm_logits.copy()
    junk[1, :, 1:] = 100.0
    loss2, _ = realm_mlm_loss(logits, np.ones((2, 2)), junk, other, mask)
    np.testing.assert_array_equal(loss, loss2)
    no_masks, _ = realm_mlm_loss(logits, np.ones((2, 2)), mlm_logits, targets, 0 * mask)
    assert float(no_masks) == 0.0  # divide-no-nan: an empty batch is not NaN


def test_marginal_log_loss_reference_and_zero_when_nothing_is_correct():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 6)).astype(np.float32) * 3
    correct = np.array([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], bool)
    valid = np.array([[1] * 6, [1] * 6, [1, 1, 1, 1, 1, 0]], bool)  # row 2: a correct but padded
    out = marginal_log_loss(logits, correct, valid)
    ref0 = logsumexp(logits[0]) - logsumexp(logits[0][correct[0]])
    ref2 = logsumexp(logits[2][:5]) - logits[2][4]
    np.testing.assert_allclose(out, [ref0, 0.0, ref2], **TOL)
    grad = jax.grad(lambda x: marginal_log_loss(x, correct, valid).sum())(jnp.asarray(logits))
    assert np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[1] == 0.0) and np.all(np.asarray(grad)[2, 5] == 0.0)


def test_correct_spans_and_unanswerable_question_in_a_batch():
    starts, ends = jnp.array([0, 1, 2, 0, 1]), jnp.array([0, 1, 2, 1, 2])  # widths 1 and 2
    gold_s = jnp.array([[[1, -1], [-1, -1]], [[-1, -1], [-1, -1]]])  # [b=2, r=2, a=2]
    gold_e = jnp.array([[[2, -1], [-1, -1]], [[-1, -1], [-1, -1]]])
    correct = correct_spans(starts, ends, gold_s, gold_e)
    assert correct.shape == (2, 2, 5)
    np.testing.assert_array_equal(correct[0, 0], [0, 0, 0, 0, 1])
    assert not np.asarray(correct[1:]).any() and not np.asarray(correct[0, 1]).any()

    rng = np.random.default_rng(6)
    retr = rng.normal(size=(2, 3)).astype(np.float32)
    reader = rng.normal(size=(2, 2, 5)).astype(np.float32)
    span_mask = np.ones((2, 2, 5), bool)
    beam_correct = np.array([[1, 0, 0], [0, 0, 0]], bool)

    def total(reader_logits):
        return openqa_loss(retr, beam_correct, np.ones((2, 3), bool), reader_logits, span_mask,
                           correct)

    loss, metrics = total(jnp.asarray(reader))
    np.testing.assert_array_equal(metrics["example_reader_loss"][1], 0.0)
    np.testing.assert_array_equal(metrics["example_retriever_loss"][1], 0.0)
    assert float(metrics["example_reader_loss"][0]) > 0.0
    first = metrics["example_reader_loss"][0] + metrics["example_retriever_loss"][0]
    np.testing.assert_allclose(loss, first / 2, **TOL)  # the unanswerable question adds 0
    grad = jax.grad(lambda x: total(x)[0])(jnp.asarray(reader))
    assert np.all(np.asarray(grad)[1] == 0.0) and np.abs(np.asarray(grad)[0]).max() > 0


def test_ict_loss_gathers_negatives_across_devices(num_devices):
    rng = np.random.default_rng(7)
    query = rng.normal(size=(16, 6)).astype(np.float32)
    block = rng.normal(size=(16, 6)).astype(np.float32)
    logits = query.astype(np.float64) @ block.T.astype(np.float64)
    nll = -np.diag(log_softmax(logits, -1))
    loss, metrics = ict_loss(query, block)
    np.testing.assert_allclose(loss, nll.mean(), **TOL)
    pmapped = jax.pmap(lambda q, b: ict_loss(q, b, axis_name="batch")[1], axis_name="batch")
    per_device = pmapped(*shard((query, block), num_devices))
    np.testing.assert_allclose(np.asarray(per_device["example_loss"]).reshape(-1), nll, **TOL)
    assert float(np.sum(per_device["accuracy_sum"])) == np.sum(logits.argmax(-1) == np.arange(16))
