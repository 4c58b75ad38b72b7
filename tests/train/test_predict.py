"""Jitted prediction (best span, exact top-k retrieval) and the pmapped eval step.

Tolerance 1e-5: jitted and eager float32 differ by XLA's fusion order only (~1e-7 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.losses import realm_mlm_loss
from realm_jax.train.parallel import replicate, shard, unreplicate
from realm_jax.train.predict import make_openqa_predict, make_retrieve_top_k
from realm_jax.train.steps import REALM_METRICS, make_eval_step, realm_loss_fn


def test_openqa_predict_is_the_best_valid_span(step_config, make_batch, init_model):
    batch = make_batch("openqa", np.random.default_rng(0))
    model, params = init_model("openqa", step_config, batch)
    pred = make_openqa_predict(model)(params, batch)
    keys = ("question_ids", "question_mask", "beam_emb", "reader_ids", "reader_mask",
            "reader_type_ids", "reader_block_mask")  # fmt: skip
    beam_logits, logits, span_mask, starts, ends = jax.jit(model.apply)(
        params, *(batch[k] for k in keys)
    )
    logits, span_mask = np.asarray(logits), np.asarray(span_mask)
    for b in range(logits.shape[0]):
        masked = np.where(span_mask[b], logits[b], -np.inf)
        block, span = np.unravel_index(np.argmax(masked), masked.shape)
        predicted = (pred["block_index"][b], pred["start"][b], pred["end"][b])
        assert predicted == (block, starts[span], ends[span])
        assert span_mask[b, block, span]  # inside the evidence block, never in the question
        np.testing.assert_allclose(pred["score"][b], masked.max(), rtol=1e-5, atol=1e-5)
        assert 0 <= ends[span] - starts[span] < 3  # max_span_width
    np.testing.assert_allclose(pred["retriever_logits"], beam_logits, rtol=1e-5, atol=1e-5)


def test_retrieve_top_k_is_exact(step_config, make_batch, init_model):
    batch = make_batch("openqa", np.random.default_rng(1))
    model, params = init_model("openqa", step_config, batch)
    retriever = model.config.retriever()
    r_params = {"params": params["params"]["retriever"]}
    block_emb = np.random.default_rng(2).normal(size=(50, 16)).astype(np.float32)
    scores, ids = make_retrieve_top_k(retriever, k=5)(
        r_params, batch["question_ids"], batch["question_mask"], block_emb
    )
    q = retriever.apply(r_params, batch["question_ids"], batch["question_mask"],
                        method=retriever.embed_query)  # fmt: skip
    all_scores = np.asarray(q) @ block_emb.T
    np.testing.assert_array_equal(ids, np.argsort(-all_scores, -1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(all_scores, -1)[:, ::-1][:, :5], rtol=1e-5)


def test_realm_eval_step_gives_global_means(num_devices, step_config, make_batch, init_model):
    """Eval on 8 devices equals the loss of the whole batch computed in one piece, unsharded."""
    batch = make_batch("realm", np.random.default_rng(3))
    model, params = init_model("realm", step_config, batch)
    keys = ("query_ids", "query_mask", "cand_ids", "cand_mask", "cand_type_ids", "joint_ids",
            "joint_mask", "joint_type_ids", "mlm_positions")  # fmt: skip
    logits, mlm_logits = jax.jit(model.apply)(params, *(batch[k] for k in keys))
    loss, sums = realm_mlm_loss(
        logits, batch["cand_valid"], mlm_logits, batch["mlm_targets"], batch["mlm_mask"]
    )
    eval_step = make_eval_step(realm_loss_fn(model), REALM_METRICS)
    metrics = unreplicate(eval_step(replicate(params), shard(batch, num_devices)))
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        metrics["retrieval_utility"], sums["retrieval_utility_sum"] / sums["num_masks"], 1e-5, 1e-5
    )
    assert float(metrics["num_masks"]) == float(jnp.sum(batch["mlm_mask"])) == 15
