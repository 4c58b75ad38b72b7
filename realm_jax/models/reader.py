"""Readers over ``[CLS] x [SEP] z [SEP]``: REALM's knowledge-augmented encoder, ORQA's span reader.

``KnowledgeAugEncoder`` gives p(y_j | z, x) (paper 2.3): BERT, then BERT's MLM head (transform
dense + activation + LayerNorm, decoder tied to the word embeddings, output bias) at the masked
positions. ``SpanReader`` is ORQA's reader (docs/DESIGN.md 2.6): score(s, e) =
w . LayerNorm(relu(W_s h_s + W_e h_e)) over spans of up to ``max_span_width`` wordpieces inside
the block, plus the retriever logit.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.models.bert import ACTIVATIONS, BertConfig, BertModel

Dtype = Any


def _dense(features: int, cfg: BertConfig, dtype: Dtype, param_dtype: Dtype, name: str):
    init = nn.initializers.truncated_normal(cfg.initializer_range)
    return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, kernel_init=init, name=name)


class MlmHead(nn.Module):
    """Hidden states [..., hidden] -> vocabulary logits [..., vocab] through the tied decoder."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, attend):
        cfg = self.config
        h = _dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "transform_dense")(hidden)
        h = ACTIVATIONS[cfg.hidden_act](h)
        h = nn.LayerNorm(
            epsilon=cfg.layer_norm_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="transform_LayerNorm",
        )(h)
        bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,), self.param_dtype)
        return attend(h) + bias  # decoder = word embeddings (tied), plus an output-only bias


class KnowledgeAugEncoder(nn.Module):
    """MLM logits of the joint input at the masked positions: p(y_j | z, x) before softmax."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False  # BertModel.remat

    def setup(self):
        self.bert = BertModel(self.config, self.dtype, self.param_dtype, remat=self.remat)
        self.mlm_head = MlmHead(self.config, self.dtype, self.param_dtype)

    def __call__(
        self,
        input_ids,  # [..., seq]
        input_mask,
        token_type_ids,
        mlm_positions,  # [..., num_masks]
        deterministic: bool = True,
    ):
        """-> MLM logits [..., num_masks, vocab]; only the masked positions reach the vocabulary."""
        lead, seq_len = input_ids.shape[:-1], input_ids.shape[-1]
        num_masks = mlm_positions.shape[-1]
        flat = lambda x: x.reshape(-1, x.shape[-1])
        seq, _ = self.bert(
            flat(input_ids), flat(input_mask), flat(token_type_ids), deterministic
        )  # [n, seq, hidden]
        positions = jnp.clip(flat(mlm_positions), 0, seq_len - 1)
        hidden = jnp.take_along_axis(seq, positions[..., None], axis=1)  # [n, num_masks, hidden]
        logits = self.mlm_head(hidden, self.bert.attend)  # [n, num_masks, vocab]
        return logits.reshape(*lead, num_masks, self.config.vocab_size)


def span_candidates(seq_len: int, max_span_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Spans of width 1..max_span_width in ORQA's order (by width, then start): starts, ends [S]."""
    widths = range(1, min(max_span_width, seq_len) + 1)
    starts = np.concatenate([np.arange(seq_len - w + 1) for w in widths]).astype(np.int32)
    ends = np.concatenate([np.arange(w - 1, seq_len) for w in widths]).astype(np.int32)
    return starts, ends


class SpanReader(nn.Module):
    """ORQA's reader: span logits [..., S] = span MLP + retriever logit, masked to the block."""

    config: BertConfig
    span_hidden_size: int = 256
    max_span_width: int = 10
    span_layer_norm_eps: float = 1e-3  # ORQA: tf.keras LayerNormalization's default
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False  # BertModel.remat

    def setup(self):
        cfg, dt, pdt = self.config, self.dtype, self.param_dtype
        self.bert = BertModel(cfg, dt, pdt, remat=self.remat)
        span2 = 2 * self.span_hidden_size  # start and end projections side by side
        self.span_intermediate = _dense(span2, cfg, dt, pdt, "span_intermediate")
        self.span_LayerNorm = nn.LayerNorm(
            epsilon=self.span_layer_norm_eps, dtype=dt, param_dtype=pdt
        )
        self.span_output = _dense(1, cfg, dt, pdt, "span_output")

    def __call__(
        self,
        input_ids,  # [..., seq]
        input_mask,
        token_type_ids,
        block_mask,  # [..., seq] 1 on the evidence block's tokens
        retriever_logits,  # [...]
        deterministic: bool = True,
    ):
        """-> (logits [..., S], span_mask [..., S], starts [S], ends [S]); masked spans get min."""
        lead, seq_len = input_ids.shape[:-1], input_ids.shape[-1]
        flat = lambda x: x.reshape(-1, x.shape[-1])
        seq, _ = self.bert(flat(input_ids), flat(input_mask), flat(token_type_ids), deterministic)
        start_proj, end_proj = jnp.split(self.span_intermediate(seq), 2, axis=-1)  # [n, seq, h]
        starts, ends = span_candidates(seq_len, self.max_span_width)
        hidden = jnp.take(start_proj, starts, axis=1) + jnp.take(end_proj, ends, axis=1)
        hidden = self.span_LayerNorm(jax.nn.relu(hidden))  # [n, S, span_hidden]
        scores = self.span_output(hidden)[..., 0].reshape(*lead, len(starts))  # [..., S]
        in_block = block_mask.astype(bool)
        span_mask = jnp.take(in_block, starts, axis=-1) & jnp.take(in_block, ends, axis=-1)
        logits = scores + retriever_logits[..., None].astype(scores.dtype)
        # Replaced, not added (the port adds min, ORQA adds -10000): nothing can overflow to -inf.
        logits = jnp.where(span_mask, logits, jnp.finfo(logits.dtype).min)
        return logits, span_mask, jnp.asarray(starts), jnp.asarray(ends)
