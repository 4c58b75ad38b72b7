"""Hugging Face BERT checkpoints -> our Flax parameter tree, numpy only (no torch at run time)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from realm_jax.convert.torch_zip import load_torch_zip
from realm_jax.errors import ConversionError
from realm_jax.models.bert import BertConfig, BertModel

# Buffers that HF checkpoints carry but that are not parameters.
_IGNORED_SUFFIXES = ("position_ids", "num_batches_tracked")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` or PyTorch ``.bin`` file (or a directory holding one) into numpy."""
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(path, name)):
                return load_state_dict(os.path.join(path, name))
        raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin in directory")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise ConversionError(f"{path}: unreadable safetensors file ({e})") from None
    return load_torch_zip(path)


def bert_key_map(cfg: BertConfig, prefix: str = "") -> dict[tuple[str, ...], tuple[str, bool]]:
    """Our parameter path -> (HF tensor name, transpose?) for a BertModel under ``prefix``."""
    m: dict[tuple[str, ...], tuple[str, bool]] = {}

    def dense(ours: tuple[str, ...], theirs: str):
        m[ours + ("kernel",)] = (f"{prefix}{theirs}.weight", True)  # torch Linear is [out, in]
        m[ours + ("bias",)] = (f"{prefix}{theirs}.bias", False)

    def norm(ours: tuple[str, ...], theirs: str):
        m[ours + ("scale",)] = (f"{prefix}{theirs}.weight", False)
        m[ours + ("bias",)] = (f"{prefix}{theirs}.bias", False)

    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        m[("embeddings", name, "embedding")] = (f"{prefix}embeddings.{name}.weight", False)
    norm(("embeddings", "LayerNorm"), "embeddings.LayerNorm")
    for i in range(cfg.num_hidden_layers):
        ours, theirs = f"layer_{i}", f"encoder.layer.{i}"
        for qkv in ("query", "key", "value"):
            dense((ours, "attention", qkv), f"{theirs}.attention.self.{qkv}")
        dense((ours, "attention_output"), f"{theirs}.attention.output.dense")
        norm((ours, "attention_LayerNorm"), f"{theirs}.attention.output.LayerNorm")
        dense((ours, "intermediate"), f"{theirs}.intermediate.dense")
        dense((ours, "output"), f"{theirs}.output.dense")
        norm((ours, "output_LayerNorm"), f"{theirs}.output.LayerNorm")
    dense(("pooler",), "pooler.dense")
    return m


def _lookup(sd: Mapping[str, np.ndarray], key: str) -> str | None:
    """The name ``key`` is stored under; old checkpoints call LayerNorm params gamma/beta."""
    alias = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
        "LayerNorm.bias", "LayerNorm.beta"
    )
    return next((k for k in (key, alias) if k in sd), None)


def params_from_state_dict(
    sd: Mapping[str, np.ndarray],
    key_map: Mapping[tuple[str, ...], tuple[str, bool]],
    expected_shapes: Mapping[tuple[str, ...], tuple[int, ...]] | None = None,
    dtype=np.float32,
) -> tuple[dict, set[str]]:
    """Builds a nested param dict from ``sd`` by ``key_map``; returns (params, names used).

    Raises ConversionError naming every missing tensor and every shape mismatch.
    """
    params: dict = {}
    used: set[str] = set()
    missing, bad_shape = [], []
    for path, (key, transpose) in key_map.items():
        stored = _lookup(sd, key)
        if stored is None:
            missing.append(key)
            continue
        used.add(stored)
        arr = np.asarray(sd[stored], dtype=dtype)
        arr = arr.T if transpose else arr
        if expected_shapes is not None and tuple(arr.shape) != tuple(expected_shapes[path]):
            bad_shape.append(
                f"{key}: {tuple(arr.shape)} != expected {tuple(expected_shapes[path])}"
            )
            continue
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = arr
    if missing or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing tensors: {', '.join(missing)}")
        if bad_shape:
            parts.append(f"wrong shapes: {'; '.join(bad_shape)}")
        raise ConversionError("; ".join(parts))
    return params, used


def unexpected_keys(sd: Mapping[str, np.ndarray], used: set[str], prefix: str = "") -> list[str]:
    """Tensors under ``prefix`` that nothing consumed (buffers such as position_ids excepted)."""
    return sorted(
        k
        for k in sd
        if k.startswith(prefix) and k not in used and not k.endswith(_IGNORED_SUFFIXES)
    )


def _detect_prefix(sd: Mapping[str, np.ndarray]) -> str:
    for prefix in ("", "bert.", "model.", "encoder."):
        if f"{prefix}embeddings.word_embeddings.weight" in sd:
            return prefix
    raise ConversionError(
        "no BERT embeddings found (looked for "
        "[bert.|model.|encoder.]embeddings.word_embeddings.weight)"
    )


def load_hf_bert(
    path: str, config: BertConfig | None = None, dtype=np.float32
) -> tuple[BertConfig, dict]:
    """Loads an HF BERT checkpoint (file or dir) -> (config, ``{"params": ...}`` for BertModel).

    The config comes from ``config.json`` beside the weights unless given. Keys under the BERT
    prefix that are not BERT parameters raise ConversionError; heads outside it (``cls.*``) are
    left alone.
    """
    if config is None:
        cfg_dir = path if os.path.isdir(path) else os.path.dirname(path)
        cfg_file = os.path.join(cfg_dir, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"{cfg_file}: no config.json; pass the BertConfig explicitly")
        config = BertConfig.from_json_file(cfg_file)
    sd = load_state_dict(path)
    prefix = _detect_prefix(sd)
    key_map = bert_key_map(config, prefix)
    if f"{prefix}pooler.dense.weight" not in sd:
        raise ConversionError(f"{path}: missing tensors: {prefix}pooler.dense.weight")
    params, used = params_from_state_dict(sd, key_map, _expected_shapes(config), dtype)
    extra = unexpected_keys(sd, used, prefix)
    if extra:
        raise ConversionError(f"{path}: unexpected tensors: {', '.join(extra)}")
    return config, {"params": params}


def _expected_shapes(cfg: BertConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    import jax
    import jax.numpy as jnp

    def init():
        ids = jnp.zeros((1, 8), jnp.int32)
        return BertModel(cfg).init(jax.random.PRNGKey(0), ids, ids)["params"]

    leaves = jax.tree_util.tree_flatten_with_path(jax.eval_shape(init))[0]
    return {tuple(k.key for k in path): tuple(v.shape) for path, v in leaves}
