"""Weights out: a trained run's BERT towers as Hugging Face BERT directories.

``export_hf(workdir, out_dir, part)`` writes ``model.safetensors`` (BertModel names, PyTorch's
[out, in] kernels), ``config.json`` and the WordPiece vocabulary, which
``transformers.BertModel.from_pretrained(out_dir)`` loads. Parts: ``query`` and ``doc`` (the
retriever's towers: one and the same when they are shared; the 128-d projection after the pooler is
not a BertModel parameter and is left out), ``encoder`` (REALM's knowledge-augmented encoder, MLM
head left out) and ``reader`` (the open-QA reader's BERT, span head left out).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from realm_jax.convert.hf_bert import bert_key_map
from realm_jax.data.tokenization import vocab_path
from realm_jax.errors import ConfigError
from realm_jax.models.bert import BertConfig
from realm_jax.models.realm import embedder_params, query_tower
from realm_jax.run.model_setup import bert_config, load_run
from realm_jax.utils.jsonl import atomic_write

PARTS = ("query", "doc", "encoder", "reader")


def bert_params(params: dict, part: str) -> dict:
    """The BertModel parameters of ``part`` inside a run's full params."""
    if part not in PARTS:
        raise ConfigError(f"part={part!r}: expected one of {', '.join(PARTS)}")
    p = params["params"]
    if part == "query":
        return query_tower(params)["params"]["bert"]
    if part == "doc":
        return embedder_params(params)["params"]["bert"]
    owner = {"encoder": "encoder", "reader": "reader"}[part]
    if owner not in p:
        raise ConfigError(f"part={part!r}: this run has no {owner} (its parts: {sorted(p)})")
    return p[owner]["bert"]


def hf_state_dict(bert: dict, cfg: BertConfig) -> dict[str, np.ndarray]:
    """Our BertModel params -> the tensors of a Hugging Face ``BertModel`` state dict."""
    flat = traverse_util.flatten_dict(bert)
    out = {}
    for ours, (theirs, transpose) in bert_key_map(cfg).items():
        value = np.asarray(flat[ours], np.float32)
        out[theirs] = np.ascontiguousarray(value.T if transpose else value)
    return out


def write_hf_bert(bert: dict, cfg: BertConfig, out_dir: str) -> None:
    """Writes ``model.safetensors``, ``config.json``, ``vocab.txt`` and a tokenizer config."""
    os.makedirs(out_dir, exist_ok=True)
    save_file(hf_state_dict(bert, cfg), os.path.join(out_dir, "model.safetensors"))
    config = dataclasses.asdict(cfg) | {"model_type": "bert", "architectures": ["BertModel"]}
    with atomic_write(os.path.join(out_dir, "config.json")) as f:
        json.dump(config, f, indent=1, sort_keys=True)
    shutil.copyfile(vocab_path(), os.path.join(out_dir, "vocab.txt"))
    with atomic_write(os.path.join(out_dir, "tokenizer_config.json")) as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)


def export_hf(workdir: str, out_dir: str, part: str = "query", step: int | None = None) -> int:
    """Writes ``part`` of the run in ``workdir`` (its newest good step, or ``step``) to
    ``out_dir`` as a Hugging Face BERT directory; returns the step exported."""
    config, _, params, step = load_run(workdir, step)
    write_hf_bert(bert_params(params, part), bert_config(config.model), out_dir)
    return step
