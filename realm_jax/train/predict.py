"""Jitted prediction: the best answer span per question and exact top-k retrieval scores."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from realm_jax.models.realm import OpenQAModel
from realm_jax.models.retriever import Retriever


def make_openqa_predict(model: OpenQAModel) -> Callable:
    """Jitted ``predict(params, batch) -> dict`` of the best span per question (ORQA's argmax)."""

    @jax.jit
    def predict(params, batch):
        beam_logits, reader_logits, _, starts, ends = model.apply(
            params,
            *(batch[k] for k in ("question_ids", "question_mask", "beam_emb", "reader_ids")),
            *(batch[k] for k in ("reader_mask", "reader_type_ids", "reader_block_mask")),
        )
        b, _, num_spans = reader_logits.shape
        flat = reader_logits.reshape(b, -1)  # [b, reader_beam * S]
        best = jnp.argmax(flat, -1)  # ORQA's (argmax of row maxima, of column maxima) save ties
        span = best % num_spans
        return {
            "block_index": best // num_spans,  # [b] into the reader beam
            "start": starts[span],  # [b] token positions in the reader input, inclusive
            "end": ends[span],
            "score": jnp.max(flat, -1),
            # p(best block, best span | x) over the reader beam's valid spans (invalid spans hold
            # finfo.min logits: probability 0).
            "probability": jnp.max(jax.nn.softmax(flat.astype(jnp.float32), -1), -1),
            "retriever_logits": beam_logits,  # [b, beam]
        }

    return predict


def make_retrieve_top_k(model: Retriever, k: int) -> Callable:
    """Jitted ``top_k(params, query_ids, query_mask, block_emb [N, D]) -> (scores, ids) [B, k]``."""

    @jax.jit
    def top_k(params, query_ids, query_mask, block_emb):
        query_emb = model.apply(params, query_ids, query_mask, method=model.embed_query)
        scores = jnp.einsum("bd,nd->bn", query_emb, block_emb.astype(query_emb.dtype))
        return jax.lax.top_k(scores, k)

    return top_k
