"""The REALM retriever (paper 2.3): Embed_input, Embed_doc and the relevance score f(x, z).

``Embedder`` is the released checkpoints' shape: BERT pooled output -> Dense(128) -> LayerNorm.
``Retriever`` holds one shared tower (``embedder``) or a document tower (``embedder``) and a query
tower (``query_embedder``), mirroring HF ``RealmScorer``. f(x, z) = Embed_input(x) . Embed_doc(z).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from realm_jax.models.bert import BertConfig, BertModel

Dtype = Any


def retrieval_logits(query_emb: jax.Array, cand_emb: jax.Array) -> jax.Array:
    """f(x, z): query_emb [batch, dim] . cand_emb [batch, k, dim] -> [batch, k]."""
    return jnp.einsum("bd,bkd->bk", query_emb, cand_emb)


class Embedder(nn.Module):
    """One retriever tower: token ids [..., seq] -> embedding [..., proj_size]."""

    config: BertConfig
    proj_size: int = 128
    layer_norm_eps: float = 1e-12
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False  # BertModel.remat

    def setup(self):
        init = nn.initializers.truncated_normal(self.config.initializer_range)
        self.bert = BertModel(self.config, self.dtype, self.param_dtype, remat=self.remat)
        self.dense = nn.Dense(
            self.proj_size, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=init
        )
        self.LayerNorm = nn.LayerNorm(
            epsilon=self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )

    def __call__(self, input_ids, input_mask, token_type_ids=None, deterministic: bool = True):
        lead, seq_len = input_ids.shape[:-1], input_ids.shape[-1]
        flat = lambda x: None if x is None else x.reshape(-1, seq_len)
        _, pooled = self.bert(
            flat(input_ids), flat(input_mask), flat(token_type_ids), deterministic,
            pooled_only=True,
        )  # [n, hidden]
        emb = self.LayerNorm(self.dense(pooled))  # [n, proj_size]
        return emb.reshape(*lead, self.proj_size)


class Retriever(nn.Module):
    """Query and document towers (shared or separate) and the relevance scores f(x, z)."""

    config: BertConfig
    proj_size: int = 128
    layer_norm_eps: float = 1e-12
    share_embedders: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat: bool = False  # BertModel.remat

    def setup(self):
        args = (self.config, self.proj_size, self.layer_norm_eps, self.dtype, self.param_dtype)
        tower = lambda name: Embedder(*args, remat=self.remat, name=name)
        self.embedder = tower("embedder")  # Embed_doc (and Embed_input when shared)
        if not self.share_embedders:
            self.query_embedder = tower("query_embedder")

    def embed_query(self, input_ids, input_mask, token_type_ids=None, deterministic=True):
        """Embed_input(x): [..., seq] -> [..., proj_size]."""
        tower = self.embedder if self.share_embedders else self.query_embedder
        return tower(input_ids, input_mask, token_type_ids, deterministic)

    def embed_docs(self, input_ids, input_mask, token_type_ids=None, deterministic=True):
        """Embed_doc(z): [..., seq] -> [..., proj_size]."""
        return self.embedder(input_ids, input_mask, token_type_ids, deterministic)

    def __call__(
        self,
        query_ids,  # [batch, query_len]
        query_mask,
        cand_ids,  # [batch, k, cand_len]
        cand_mask,
        cand_type_ids=None,
        query_type_ids=None,
        deterministic: bool = True,
    ):
        """-> (query_emb [batch, dim], cand_emb [batch, k, dim], logits f(x, z) [batch, k])."""
        query_emb = self.embed_query(query_ids, query_mask, query_type_ids, deterministic)
        cand_emb = self.embed_docs(cand_ids, cand_mask, cand_type_ids, deterministic)
        return query_emb, cand_emb, retrieval_logits(query_emb, cand_emb)
