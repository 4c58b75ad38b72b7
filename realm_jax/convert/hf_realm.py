"""Hugging Face REALM checkpoints (the PyTorch port) -> our REALM parameter trees, numpy only.

Kinds: ``embedder`` (RealmEmbedder -> Embedder), ``scorer`` (RealmScorer -> Retriever),
``encoder`` (RealmKnowledgeAugEncoder -> KnowledgeAugEncoder), ``reader`` (RealmReader ->
SpanReader) and ``openqa`` (RealmForOpenQA -> OpenQAModel). BERT names always come from
:func:`bert_key_map`. Where the port and the original TF code differ: docs/PORT_DIFFERENCES.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from realm_jax.convert.hf_bert import (
    bert_key_map,
    load_state_dict,
    params_from_state_dict,
    unexpected_keys,
)
from realm_jax.errors import ConversionError
from realm_jax.models.bert import BertConfig
from realm_jax.models.reader import KnowledgeAugEncoder, SpanReader
from realm_jax.models.realm import OpenQAModel, RealmConfig
from realm_jax.models.retriever import Embedder

KeyMap = dict[tuple[str, ...], tuple[str, bool]]
KINDS = ("embedder", "scorer", "encoder", "reader", "openqa")

# Heads the port carries that no REALM computation reads (RealmScorerProjection and RealmReader
# both hold an unused MLM head); RealmForOpenQA's block_emb is the index, not a parameter.
_UNUSED = {
    "embedder": ("cls.predictions.",),
    "scorer": ("embedder.cls.predictions.", "query_embedder.cls.predictions."),
    "encoder": (),
    "reader": ("cls.",),
    "openqa": ("embedder.cls.predictions.", "reader.cls.", "block_emb"),
}


def _under(path: tuple[str, ...], key_map: KeyMap) -> KeyMap:
    return {path + k: v for k, v in key_map.items()}


def _dense(ours: tuple[str, ...], theirs: str) -> KeyMap:
    return {
        ours + ("kernel",): (f"{theirs}.weight", True),  # torch Linear is [out, in]
        ours + ("bias",): (f"{theirs}.bias", False),
    }


def _norm(ours: tuple[str, ...], theirs: str) -> KeyMap:
    return {
        ours + ("scale",): (f"{theirs}.weight", False),
        ours + ("bias",): (f"{theirs}.bias", False),
    }


def embedder_key_map(cfg: RealmConfig, prefix: str = "") -> KeyMap:
    """Embedder param path -> (RealmEmbedder tensor name, transpose?)."""
    return {
        **_under(("bert",), bert_key_map(cfg.bert, f"{prefix}realm.")),
        **_dense(("dense",), f"{prefix}cls.dense"),
        **_norm(("LayerNorm",), f"{prefix}cls.LayerNorm"),
    }


def retriever_key_map(cfg: RealmConfig, prefix: str = "") -> KeyMap:
    """Retriever params <- RealmScorer (``embedder.`` documents, ``query_embedder.`` queries)."""
    m = _under(("embedder",), embedder_key_map(cfg, f"{prefix}embedder."))
    if not cfg.share_embedders:
        m.update(_under(("query_embedder",), embedder_key_map(cfg, f"{prefix}query_embedder.")))
    return m


def encoder_key_map(cfg: RealmConfig, prefix: str = "") -> KeyMap:
    """KnowledgeAugEncoder params <- RealmKnowledgeAugEncoder (decoder weight tied, not mapped)."""
    head = f"{prefix}cls.predictions"
    return {
        **_under(("bert",), bert_key_map(cfg.bert, f"{prefix}realm.")),
        **_dense(("mlm_head", "transform_dense"), f"{head}.transform.dense"),
        **_norm(("mlm_head", "transform_LayerNorm"), f"{head}.transform.LayerNorm"),
        ("mlm_head", "bias"): (f"{head}.bias", False),
    }


def reader_key_map(cfg: RealmConfig, prefix: str = "") -> KeyMap:
    """SpanReader params <- RealmReader (``qa_outputs`` is ORQA's reader/dense, dense_1, LN)."""
    qa = f"{prefix}qa_outputs"
    return {
        **_under(("bert",), bert_key_map(cfg.bert, f"{prefix}realm.")),
        **_dense(("span_intermediate",), f"{qa}.dense_intermediate"),
        **_dense(("span_output",), f"{qa}.dense_output"),
        **_norm(("span_LayerNorm",), f"{qa}.layer_normalization"),
    }


def openqa_key_map(cfg: RealmConfig, prefix: str = "") -> KeyMap:
    """OpenQAModel params <- RealmForOpenQA (its embedder is the query tower)."""
    tower = "embedder" if cfg.share_embedders else "query_embedder"
    return {
        **_under(("retriever", tower), embedder_key_map(cfg, f"{prefix}embedder.")),
        **_under(("reader",), reader_key_map(cfg, f"{prefix}reader.")),
    }


_KEY_MAPS = {
    "embedder": embedder_key_map,
    "scorer": retriever_key_map,
    "encoder": encoder_key_map,
    "reader": reader_key_map,
    "openqa": openqa_key_map,
}


def realm_config_from_hf(d: Mapping[str, Any]) -> RealmConfig:
    """RealmConfig from an HF REALM ``config.json`` dict (the projection LN uses layer_norm_eps)."""
    bert = BertConfig.from_dict(d)
    return RealmConfig(
        bert=bert,
        proj_size=d.get("retriever_proj_size", 128),
        proj_layer_norm_eps=bert.layer_norm_eps,
        span_hidden_size=d.get("span_hidden_size", 256),
        max_span_width=d.get("max_span_width", 10),
        span_layer_norm_eps=d.get("reader_layer_norm_eps", 1e-3),
    )


def expected_shapes(cfg: RealmConfig, kind: str) -> dict[tuple[str, ...], tuple[int, ...]]:
    import jax
    import jax.numpy as jnp

    ids = jnp.zeros((1, 8), jnp.int32)
    seq = jnp.zeros((1, 1, 8), jnp.int32)
    model, args = {
        "embedder": (Embedder(cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps), (ids, ids)),
        "scorer": (cfg.retriever(), (ids, ids, seq, seq)),
        "encoder": (KnowledgeAugEncoder(cfg.bert), (ids, ids, ids, ids[:, :1])),
        "reader": (
            SpanReader(cfg.bert, cfg.span_hidden_size, cfg.max_span_width),
            (ids, ids, ids, ids, jnp.zeros((1,))),
        ),
        "openqa": (
            OpenQAModel(cfg),
            (ids, ids, jnp.zeros((1, 1, cfg.proj_size)), seq, seq, seq, seq),
        ),
    }[kind]
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *args)["params"])
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {tuple(k.key for k in path): tuple(v.shape) for path, v in leaves}


def _check_tied(sd: Mapping[str, np.ndarray], word_emb: str, decoder: str) -> None:
    if decoder in sd and not np.array_equal(np.asarray(sd[decoder]), np.asarray(sd[word_emb])):
        raise ConversionError(f"{decoder} differs from {word_emb}; we tie the MLM decoder")


def _check_shared(sd: Mapping[str, np.ndarray]) -> None:
    """A shared-tower scorer may list the query tower again, but only as an exact copy."""
    for key in [k for k in sd if k.startswith("query_embedder.")]:
        twin = "embedder." + key[len("query_embedder.") :]
        if twin not in sd or not np.array_equal(np.asarray(sd[key]), np.asarray(sd[twin])):
            raise ConversionError(
                f"{key} differs from {twin}: separate towers, use share_embedders=False"
            )


def params_from_hf_realm(
    sd: Mapping[str, np.ndarray], cfg: RealmConfig, kind: str, dtype=np.float32
) -> dict:
    """An HF REALM state dict of ``kind`` (see KINDS) -> ``{"params": ...}`` for our module."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    used: set[str] = set()
    skip = _UNUSED[kind]
    if kind == "scorer" and cfg.share_embedders:
        _check_shared(sd)
        skip = skip + ("query_embedder.",)
    if kind == "encoder":
        _check_tied(sd, "realm.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight")
        used |= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    params, used_map = params_from_state_dict(
        sd, _KEY_MAPS[kind](cfg), expected_shapes(cfg, kind), dtype
    )
    used |= used_map | {k for k in sd if k.startswith(skip)}
    extra = unexpected_keys(sd, used)
    if extra:
        raise ConversionError(f"unexpected tensors: {', '.join(extra)}")
    return {"params": params}


def load_hf_realm(
    path: str, kind: str, config: RealmConfig | None = None, dtype=np.float32
) -> tuple[RealmConfig, dict]:
    """Loads an HF REALM checkpoint (file or dir with config.json) -> (config, params)."""
    if config is None:
        cfg_dir = path if os.path.isdir(path) else os.path.dirname(path)
        cfg_file = os.path.join(cfg_dir, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"{cfg_file}: no config.json; pass the RealmConfig explicitly")
        with open(cfg_file, encoding="utf-8") as f:
            config = realm_config_from_hf(json.load(f))
    return config, params_from_hf_realm(load_state_dict(path), config, kind, dtype)
