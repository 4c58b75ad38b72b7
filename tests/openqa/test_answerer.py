"""Jitted prediction: the best valid answer span.

Tolerance 1e-5: jitted and eager float32 differ by XLA's fusion order only (~1e-7 relative).
"""

import jax
import numpy as np

from realm_jax.openqa.answerer import make_openqa_predict


def test_openqa_predict_is_the_best_valid_span(step_config, make_batch, init_model):
    batch = make_batch("openqa", np.random.default_rng(0))
    model, params = init_model("openqa", step_config, batch)
    pred = make_openqa_predict(model)(params, batch)
    keys = ("question_ids", "question_mask", "beam_emb", "reader_ids", "reader_mask",
            "reader_type_ids", "reader_block_mask")
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
