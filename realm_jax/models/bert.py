"""A pure Flax (linen) BERT encoder: embeddings, transformer layers, pooler.

Parameter names follow the Hugging Face / original BERT layout (``embeddings``, ``layer_<i>``,
``pooler``) so checkpoints convert with a plain name map (see ``realm_jax.convert``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # BERT's exact erf GELU
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # tanh approximation (GPT-2 style)
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture hyper-parameters of a BERT encoder (the fields of an HF ``config.json``)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"hidden_act={self.hidden_act!r}: expected one of {sorted(ACTIVATIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertConfig:
        """Builds a config from an HF-style dict, ignoring keys that are not architecture fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json_file(cls, path: str) -> BertConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def replace(self, **kwargs: Any) -> BertConfig:
        return dataclasses.replace(self, **kwargs)


def tiny_config() -> BertConfig:
    """A 2-layer, 32-wide BERT over the real uncased vocab, for fast tests."""
    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
    )


def minilm_l6_config() -> BertConfig:
    """all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, exact GELU (the shipped weights)."""
    return BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
    )


def attention_bias(input_mask: jax.Array, dtype: Dtype) -> jax.Array:
    """[batch, seq] 1/0 mask -> additive bias [batch, 1, 1, seq]: 0 on tokens, min on padding."""
    neg = jnp.finfo(dtype).min
    return jnp.where(input_mask[:, None, None, :] > 0, 0.0, neg).astype(dtype)


def _dense(features: int, cfg: BertConfig, dtype: Dtype, param_dtype: Dtype, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.initializers.truncated_normal(cfg.initializer_range),
        name=name,
    )


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        cfg = self.config
        init = nn.initializers.truncated_normal(cfg.initializer_range)
        kw = dict(features=cfg.hidden_size, embedding_init=init, param_dtype=self.param_dtype)
        self.word_embeddings = nn.Embed(cfg.vocab_size, dtype=self.dtype, **kw)
        self.position_embeddings = nn.Embed(cfg.max_position_embeddings, dtype=self.dtype, **kw)
        self.token_type_embeddings = nn.Embed(cfg.type_vocab_size, dtype=self.dtype, **kw)
        self.LayerNorm = nn.LayerNorm(
            epsilon=cfg.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, deterministic: bool):
        seq_len = input_ids.shape[-1]
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(jnp.arange(seq_len))[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits against the word embeddings (the tied MLM decoder)."""
        return self.word_embeddings.attend(x)


# Scores of one attention chunk are kept under this many bytes on CPU, so that softmax and the
# probs @ values product run from cache instead of streaming [batch, heads, q, k] through memory.
CPU_ATTENTION_CHUNK_BYTES = 4 * 2**20


# On CPU the feed-forward runs over row chunks of about this many tokens (whole sequences): its
# [tokens, intermediate] activations then stay in cache between the two GEMMs and the GELU.
CPU_FFN_CHUNK_TOKENS = 2048


def row_chunks(batch: int, seq: int, chunk_tokens: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` batch ranges of about ``chunk_tokens`` tokens each (one: no chunking)."""
    rows = batch if chunk_tokens is None else max(1, chunk_tokens // max(1, seq))
    return [(i, min(batch, i + rows)) for i in range(0, batch, rows)]


def attention_batch_chunk(batch: int, heads: int, seq: int, itemsize: int, budget: int) -> int:
    """Largest divisor of ``batch`` whose ``[chunk, heads, seq, seq]`` scores fit the budget."""
    per_example = heads * seq * seq * itemsize
    fits = max(1, budget // per_example)
    return max(c for c in range(1, batch + 1) if batch % c == 0 and c <= fits)


def dot_product_attention(q, k, v, bias, dropout_rate: float = 0.0, dropout_rng=None):
    """softmax(q k^T / sqrt(d) + bias) v over ``[batch, heads, seq, head_dim]`` inputs."""
    scores = jnp.einsum("bhqd,bhkd->bhqk", q * (q.shape[-1] ** -0.5), k) + bias
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
    if dropout_rng is not None and dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0).astype(q.dtype)
    return jnp.einsum("bhqk,bhkd->bhqd", probs, v)


class BertSelfAttention(nn.Module):
    """Multi-head self-attention with an additive padding bias.

    Heads are laid out ``[batch, heads, seq, head_dim]`` so both attention products are batched
    GEMMs with leading batch dims. On CPU the batch is processed in chunks whose scores fit
    ``chunk_bytes`` (None: no chunking): the attention core then runs from cache, 2-3x faster at
    MiniLM shapes (experiments/benchmarks/attention_layout.py).
    """

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    chunk_bytes: int | None = CPU_ATTENTION_CHUNK_BYTES

    @nn.compact
    def __call__(self, x, bias, deterministic: bool, cls_only: bool = False):
        """x [b, s, hidden] -> [b, s, hidden]; ``cls_only``: position 0's output only, [b, 1,
        hidden] (its query attends over every key, as in the full computation)."""
        cfg = self.config
        b, s, _ = x.shape
        h, d = cfg.num_attention_heads, cfg.head_dim

        def heads(name, rows):  # [b, rows, hidden] -> [b, h, rows, d]
            y = _dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, name)(rows)
            return y.reshape(b, rows.shape[1], h, d).transpose(0, 2, 1, 3)

        q = heads("query", x[:, :1] if cls_only else x)
        k, v = heads("key", x), heads("value", x)
        rate = cfg.attention_probs_dropout_prob
        rng = None if deterministic or rate == 0.0 else self.make_rng("dropout")
        chunk = b
        if self.chunk_bytes is not None and jax.default_backend() == "cpu" and not cls_only:
            chunk = attention_batch_chunk(b, h, s, jnp.dtype(self.dtype).itemsize, self.chunk_bytes)
        if chunk == b:
            ctx = dot_product_attention(q, k, v, bias, rate, rng)
        else:
            # Each chunk's scores and probabilities are recomputed in the backward pass from its
            # q, k, v (and dropout key): the map then keeps no [batch, heads, seq, seq] tensors
            # for the backward pass, only one chunk's at a time (REALM mini's train step: 6.47
            # -> 4.97 GiB of XLA scratch memory; tests/models/test_attention_memory.py).
            core = jax.checkpoint(
                lambda q, k, v, bias, rng: dot_product_attention(q, k, v, bias, rate, rng)
            )
            n = b // chunk
            split = lambda t: t.reshape(n, chunk, *t.shape[1:])
            rngs = None if rng is None else jax.random.split(rng, n)
            ctx = jax.lax.map(
                lambda a: core(*a),
                (split(q), split(k), split(v), split(jnp.broadcast_to(bias, (b, 1, 1, s))), rngs),
            ).reshape(b, h, s, d)
        return ctx.transpose(0, 2, 1, 3).reshape(b, q.shape[2], cfg.hidden_size)


class BertLayer(nn.Module):
    """One transformer block: attention + residual LayerNorm, feed-forward + residual LayerNorm."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    attention_chunk_bytes: int | None = CPU_ATTENTION_CHUNK_BYTES
    ffn_chunk_tokens: int | None = CPU_FFN_CHUNK_TOKENS

    @nn.compact
    def __call__(self, x, bias, deterministic: bool, cls_only: bool = False):
        """x [b, s, hidden] -> [b, s, hidden] (``cls_only``: [b, 1, hidden], position 0 only)."""
        cfg = self.config
        dense = lambda n, name: _dense(n, cfg, self.dtype, self.param_dtype, name)  # noqa: E731
        norm = lambda name: nn.LayerNorm(  # noqa: E731
            epsilon=cfg.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name=name
        )
        drop = nn.Dropout(cfg.hidden_dropout_prob)

        attention = BertSelfAttention(
            cfg, self.dtype, self.param_dtype, self.attention_chunk_bytes, name="attention"
        )
        ctx = attention(x, bias, deterministic, cls_only)
        if cls_only:
            x = x[:, :1]
        attn_out = dense(cfg.hidden_size, "attention_output")(ctx)
        x = norm("attention_LayerNorm")(x + drop(attn_out, deterministic=deterministic))
        intermediate = dense(cfg.intermediate_size, "intermediate")
        output = dense(cfg.hidden_size, "output")
        ffn = lambda t: output(ACTIVATIONS[cfg.hidden_act](intermediate(t)))  # noqa: E731
        chunk = self.ffn_chunk_tokens if jax.default_backend() == "cpu" else None
        parts = row_chunks(x.shape[0], x.shape[1], chunk)
        y = ffn(x) if len(parts) == 1 else jnp.concatenate([ffn(x[a:b]) for a, b in parts])
        return norm("output_LayerNorm")(x + drop(y, deterministic=deterministic))


class BertModel(nn.Module):
    """BERT encoder -> (sequence_output [batch, seq, hidden], pooled_output [batch, hidden])."""

    config: BertConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    add_pooler: bool = True
    attention_chunk_bytes: int | None = CPU_ATTENTION_CHUNK_BYTES
    ffn_chunk_tokens: int | None = CPU_FFN_CHUNK_TOKENS
    # Recompute each layer's activations in the backward pass instead of keeping them (training
    # memory ~ one layer's, for ~1/3 more compute); the same parameters and results.
    remat: bool = False

    def setup(self):
        cfg = self.config
        self.embeddings = BertEmbeddings(cfg, self.dtype, self.param_dtype)
        # static_argnums counts self: 3 and 4 are __call__'s ``deterministic`` and ``cls_only``
        layer = nn.remat(BertLayer, static_argnums=(3, 4)) if self.remat else BertLayer
        self.layers = [
            layer(
                cfg, self.dtype, self.param_dtype, self.attention_chunk_bytes,
                self.ffn_chunk_tokens, name=f"layer_{i}",
            )
            for i in range(cfg.num_hidden_layers)
        ]
        if self.add_pooler:
            self.pooler = _dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "pooler")

    def __call__(
        self,
        input_ids,
        input_mask,
        token_type_ids=None,
        deterministic: bool = True,
        pooled_only: bool = False,
    ):
        """-> (sequence_output, pooled_output).

        ``pooled_only`` (used only when ``deterministic``): the last layer computes the [CLS]
        position alone, all the pooled output needs (its keys and values still cover every
        position); sequence_output is then [batch, 1, hidden]. The same pooled output up to float
        rounding, for ~1/7 less compute (6 layers: the last layer's queries, attention output and
        feed-forward for one position instead of all). In training the full last layer runs, so
        the dropout masks stay those of the whole sequence.
        """
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids, deterministic)
        bias = attention_bias(input_mask, self.dtype)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, bias, deterministic, pooled_only and deterministic and i == last)
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooler else None
        return x, pooled

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits of hidden states against the (tied) word embeddings."""
        return self.embeddings.attend(x)
