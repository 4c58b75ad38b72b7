"""The composed models: REALM pre-training (retriever + knowledge-augmented encoder) and ORQA-style
open-QA fine-tuning (trainable query tower against a frozen block index + span reader)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.models.bert import BertConfig
from realm_jax.models.reader import KnowledgeAugEncoder, SpanReader
from realm_jax.models.retriever import Embedder, Retriever, retrieval_logits

Dtype = Any


@dataclasses.dataclass(frozen=True)
class RealmConfig:
    """BERT shape plus REALM's heads (the extra fields of an HF ``RealmConfig``)."""

    bert: BertConfig = dataclasses.field(default_factory=BertConfig)
    proj_size: int = 128  # retriever_proj_size
    proj_layer_norm_eps: float = 1e-12  # the port uses BERT's layer_norm_eps here
    share_embedders: bool = True  # one tower for queries and documents
    span_hidden_size: int = 256
    max_span_width: int = 10
    span_layer_norm_eps: float = 1e-3  # reader_layer_norm_eps
    remat: bool = False  # recompute BERT layers in the backward pass (BertModel.remat)

    def replace(self, **kwargs: Any) -> RealmConfig:
        return dataclasses.replace(self, **kwargs)

    def retriever(self, dtype: Dtype = jnp.float32) -> Retriever:
        return Retriever(
            self.bert, self.proj_size, self.proj_layer_norm_eps, self.share_embedders, dtype,
            remat=self.remat,
        )


class RealmPretrainModel(nn.Module):
    """f(x, z) for K candidates and the encoder's MLM logits on [CLS] x [SEP] z_body [SEP]."""

    config: RealmConfig
    dtype: Dtype = jnp.float32

    def setup(self):
        self.retriever = self.config.retriever(self.dtype)
        self.encoder = KnowledgeAugEncoder(self.config.bert, self.dtype, remat=self.config.remat)

    def __call__(
        self,
        query_ids,  # [batch, query_len]
        query_mask,
        cand_ids,  # [batch, k, cand_len]
        cand_mask,
        cand_type_ids,
        joint_ids,  # [batch, k, joint_len]
        joint_mask,
        joint_type_ids,
        mlm_positions,  # [batch, num_masks] positions in the query part of the joint input
        deterministic: bool = True,
    ):
        """-> (retrieval logits [batch, k], MLM logits [batch, k, num_masks, vocab])."""
        _, _, logits = self.retriever(
            query_ids, query_mask, cand_ids, cand_mask, cand_type_ids, deterministic=deterministic
        )
        k = joint_ids.shape[1]
        b, m = mlm_positions.shape
        positions = jnp.broadcast_to(mlm_positions[:, None], (b, k, m))
        mlm_logits = self.encoder(joint_ids, joint_mask, joint_type_ids, positions, deterministic)
        return logits, mlm_logits


class EncoderMlmModel(nn.Module):
    """The knowledge-augmented encoder alone (the MLM warm start): MLM logits of a joint input.

    Its parameters are ``{"encoder": ...}``, the encoder's subtree of ``RealmPretrainModel``, so
    REALM pre-training starts its encoder from them as they are.
    """

    config: RealmConfig
    dtype: Dtype = jnp.float32

    def setup(self):
        self.encoder = KnowledgeAugEncoder(self.config.bert, self.dtype, remat=self.config.remat)

    def __call__(self, joint_ids, joint_mask, joint_type_ids, mlm_positions, deterministic=True):
        """[batch, joint_len] inputs, [batch, num_masks] positions -> [batch, num_masks, vocab]."""
        return self.encoder(joint_ids, joint_mask, joint_type_ids, mlm_positions, deterministic)


class OpenQAModel(nn.Module):
    """ORQA fine-tuning: retriever logits over a retrieved beam and reader logits on its head."""

    config: RealmConfig
    dtype: Dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.retriever = cfg.retriever(self.dtype)
        self.reader = SpanReader(
            cfg.bert, cfg.span_hidden_size, cfg.max_span_width, cfg.span_layer_norm_eps, self.dtype,
            remat=cfg.remat,
        )

    def __call__(
        self,
        question_ids,  # [batch, question_len]
        question_mask,
        beam_emb,  # [batch, beam, dim] frozen index embeddings of the retrieved blocks
        reader_ids,  # [batch, reader_beam, reader_len] the first reader_beam blocks of the beam
        reader_mask,
        reader_type_ids,
        reader_block_mask,
        deterministic: bool = True,
    ):
        """-> (retriever logits [batch, beam], reader logits [batch, reader_beam, S], span mask,
        starts [S], ends [S])."""
        question_emb = self.retriever.embed_query(
            question_ids, question_mask, deterministic=deterministic
        )
        beam_logits = retrieval_logits(question_emb, beam_emb.astype(question_emb.dtype))
        reader_beam = reader_ids.shape[1]
        reader_logits, span_mask, starts, ends = self.reader(
            reader_ids,
            reader_mask,
            reader_type_ids,
            reader_block_mask,
            beam_logits[:, :reader_beam],
            deterministic,
        )
        return beam_logits, reader_logits, span_mask, starts, ends


def openqa_params_from_pretrained(pretrain_params: dict, openqa_params: dict) -> dict:
    """Fine-tuning start (REALM 3.4): query tower from the retriever, reader BERT from the encoder;
    the span head keeps its fresh initialisation."""
    p, o = pretrain_params["params"], openqa_params["params"]
    retriever = {k: v for k, v in p["retriever"].items() if k in o["retriever"]}
    if set(retriever) != set(o["retriever"]):
        raise ValueError(
            f"retriever towers differ: {sorted(p['retriever'])} vs {sorted(o['retriever'])}"
        )
    reader = dict(o["reader"], bert=p["encoder"]["bert"])
    return {"params": dict(o, retriever=retriever, reader=reader)}


def init_params(model: nn.Module, rng: jax.Array, *example_args) -> dict:
    """Parameters of ``model`` initialised on ``example_args`` (only their shapes matter)."""
    return jax.jit(lambda r, *a: model.init(r, *a))(rng, *example_args)


# Where the document tower sits in a model's params: REALM / open-QA models, then a bare Retriever.
EMBEDDER_PATHS = (("params", "retriever", "embedder"), ("params", "embedder"))


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """What it takes to rebuild the document tower (Embed_doc) without the trainer's config."""

    bert: BertConfig
    proj_size: int = 128
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_realm_config(cls, config: RealmConfig) -> EmbedderSpec:
        return cls(config.bert, config.proj_size, config.proj_layer_norm_eps)

    def module(self, dtype: Any = jnp.float32) -> Embedder:
        return Embedder(self.bert, self.proj_size, self.layer_norm_eps, dtype)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EmbedderSpec:
        return cls(BertConfig.from_dict(d["bert"]), d["proj_size"], d["layer_norm_eps"])


def embedder_path(params: dict) -> tuple[str, ...]:
    """Keys leading to the document tower inside a model's full params."""
    for path in EMBEDDER_PATHS:
        node = params
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return path
    raise KeyError(f"no document tower at {' or '.join('/'.join(p) for p in EMBEDDER_PATHS)}")


def embedder_params(params: dict) -> dict:
    """The document tower's ``{"params": ...}`` inside a model's full params."""
    node = params
    for key in embedder_path(params):
        node = node[key]
    return {"params": node}


class QueryEncoder:
    """Embed_input with given tower params: query_ids [B, L] (0 = padding) -> [B, D] numpy."""

    def __init__(self, spec: EmbedderSpec):
        module = spec.module()
        self._fn = jax.jit(lambda p, ids: module.apply(p, ids, (ids != 0).astype(ids.dtype)))

    def __call__(self, tower: dict, query_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(tower, np.asarray(query_ids, np.int32)), np.float32)


def query_tower(params: dict) -> dict:
    """The query tower's ``{"params": ...}`` inside a model's params (ICT, REALM or open-QA)."""
    p = params["params"]
    towers = p.get("retriever", p)
    return {"params": towers.get("query_embedder", towers["embedder"])}
