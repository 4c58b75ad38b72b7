"""Released REALM / ORQA artifacts -> a run directory of ours, ready to evaluate or fine-tune.

What ``experiments/convert.py`` calls. ``config.released`` names the artifacts (see
``experiments/configs/openqa_nq_released.py``); the stage says what they become:

- ``openqa``: a fine-tuned open-QA model (TF ``orqa_nq_model_from_realm``, or HF
  ``RealmForOpenQA``) plus the block embeddings it retrieves from. ``evaluate.py`` and
  ``predict.py`` take the run directory as it is.
- ``realm``: the pretrained embedder and encoder (TF ``cc_news_pretrained/{embedder,bert}``, or HF
  ``RealmEmbedder`` / ``RealmKnowledgeAugEncoder``), and the embedder's block embeddings.
  ``finetune.py --config.init.pretrain_workdir=<run>`` starts from it (and reuses its index).

The run directory holds ``config.json``, the orbax checkpoint of step 0 (params and a fresh
optimiser state), the frozen index (``index/0``: the released embeddings and a searcher built
over them, as ORQA builds its ScaNN index at load) and ``released.json`` (what came from where).
The block store is built from ``data.corpus`` as for any run. Everything is checked before
anything is written: shapes, the number of blocks against the embeddings.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.convert.hf_bert import load_state_dict
from realm_jax.convert.hf_realm import params_from_hf_realm
from realm_jax.convert.tf_checkpoint import load_block_emb, load_tf_checkpoint
from realm_jax.data import input_pipeline as ip
from realm_jax.errors import ConfigError, ConversionError
from realm_jax.index.refresher import build_searcher
from realm_jax.index.searcher import emb_dtype
from realm_jax.index.store import IndexStore
from realm_jax.index.towers import save_tower
from realm_jax.models.realm import EmbedderSpec, RealmConfig
from realm_jax.run.checkpoints import save_checkpoint
from realm_jax.run.config import resolve_config
from realm_jax.run.files import CHECKPOINT_DIR, INDEX_DIR, RELEASED_FILE, save_config
from realm_jax.run.model_setup import abstract_params, create_state, realm_config
from realm_jax.utils.jsonl import atomic_write

FORMATS = ("tf", "hf")


class StateDicts:
    """HF state dicts read once per conversion (an open-QA file gives params *and* block_emb)."""

    def __init__(self):
        self._read: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, path: str) -> dict[str, np.ndarray]:
        if path not in self._read:
            self._read[path] = load_state_dict(path)
        return self._read[path]


def _load(fmt: str, path: str, cfg: RealmConfig, kind: str, read=load_state_dict) -> dict:
    if not path:
        raise ConfigError(f"released: a {kind} checkpoint is needed (released.checkpoint)")
    if fmt == "tf":
        return load_tf_checkpoint(path, cfg, kind)["params"]
    try:
        return params_from_hf_realm(read(path), cfg, kind)["params"]
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None


def released_params(config: ConfigDict, read=load_state_dict) -> dict:
    """``{"params": ...}`` of the stage's model from the artifacts ``config.released`` names
    (``read``: how an HF state dict is read, e.g. a ``StateDicts``)."""
    r, cfg = config.released, realm_config(config.model)
    if r.format not in FORMATS:
        raise ConfigError(f"released.format={r.format!r}: expected one of {FORMATS}")
    if config.stage == "openqa":
        params = _load(r.format, r.checkpoint, cfg, "openqa", read)
    elif config.stage == "realm":
        if not r.encoder_checkpoint:
            raise ConfigError("released.encoder_checkpoint: the REALM stage needs the encoder too")
        embedder = _load(r.format, r.checkpoint, cfg, "embedder", read)
        encoder = _load(r.format, r.encoder_checkpoint, cfg, "encoder", read)
        params = {"retriever": {"embedder": embedder}, "encoder": encoder}
    else:
        raise ConfigError(f"stage={config.stage!r}: released artifacts are realm or openqa")
    _check_tree(params, abstract_params(config)["params"])
    return {"params": params}


def _check_tree(params: dict, wanted: dict) -> None:
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    want = jax.tree_util.tree_flatten_with_path(wanted)[0]
    shapes = {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in got}
    expected = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in want}
    if shapes != expected:
        diff = sorted(set(shapes.items()) ^ set(expected.items()))[:3]
        raise ConversionError(f"converted params do not fit the config's model: {diff}")


def released_block_emb(config: ConfigDict, read=load_state_dict) -> np.ndarray:
    """[N, proj_size] float32: a TF ``block_emb`` checkpoint, a ``.npy`` file, or (HF open-QA)
    the ``block_emb`` the RealmForOpenQA state dict carries."""
    r, dim = config.released, config.model.proj_size
    if r.block_emb and r.block_emb.endswith(".npy"):
        if not os.path.isfile(r.block_emb):
            raise FileNotFoundError(f"{r.block_emb}: no such file")
        emb = np.load(r.block_emb, mmap_mode="r")
    elif r.block_emb:
        return load_block_emb(r.block_emb, dim)
    elif r.format == "hf" and config.stage == "openqa":
        emb = read(r.checkpoint).get("block_emb")
        if emb is None:
            raise ConversionError(f"{r.checkpoint}: no block_emb tensor; set released.block_emb")
    else:
        raise ConfigError("released.block_emb: the block embeddings are needed")
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise ConversionError(f"{r.block_emb or r.checkpoint}: block_emb {emb.shape} != [N, {dim}]")
    return np.asarray(emb, np.float32)


def _provenance(config: ConfigDict, num_blocks: int, seconds: float) -> dict:
    r = config.released
    paths = {k: r[k] for k in ("checkpoint", "encoder_checkpoint", "block_emb") if r.get(k)}
    return {
        "format": r.format,
        "stage": config.stage,
        "sources": {k: os.path.abspath(v) for k, v in paths.items()},
        "corpus": config.data.corpus,
        "num_blocks": num_blocks,
        "converted": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
    }


def convert_released(config: ConfigDict, workdir: str, tokenizer) -> dict:
    """Writes the run directory ``workdir`` from ``config``; returns ``released.json``'s dict.

    Built in ``<workdir>.tmp`` and renamed into place when complete: an error (or Ctrl-C)
    leaves no workdir. The block store goes to its cache as for any run.
    """

    start = time.perf_counter()
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir):
        raise ConfigError(f"{workdir}: already exists; convert into a new workdir")
    config = resolve_config(config, workdir, config.stage)
    read = StateDicts()
    params = released_params(config, read)
    block_emb = released_block_emb(config, read)
    del read  # the state dicts: only block_emb is still needed
    tower = _doc_tower(config, params)
    store = ip.prepare_blocks(config, config.data.blocks_dir, tokenizer)
    if len(store) != len(block_emb):
        raise ConversionError(
            f"{config.data.corpus}: {len(store)} blocks, but the block embeddings have "
            f"{len(block_emb)} rows"
        )
    emb = block_emb.astype(emb_dtype(config.index.emb_dtype))
    searcher = build_searcher(config.index.searcher, emb)
    tmp = workdir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_run(config, tmp, params, emb, searcher, tower)
        info = _provenance(config, len(store), time.perf_counter() - start)
        with atomic_write(os.path.join(tmp, RELEASED_FILE)) as f:
            json.dump(info, f, indent=1)
        os.replace(tmp, workdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def _doc_tower(config: ConfigDict, params: dict) -> dict | None:
    """The document tower that made the released embeddings, when known: REALM's embedder, or
    for open-QA ``released.doc_tower`` (the pretrained embedder; corpus edits embed with it)."""
    if config.stage == "realm":
        return {"params": params["params"]["retriever"]["embedder"]}
    r = config.released
    if not r.get("doc_tower"):
        return None
    return {"params": _load(r.format, r.doc_tower, realm_config(config.model), "embedder")}


def _write_run(
    config: ConfigDict, workdir: str, params: dict, emb: np.ndarray, searcher, tower: dict | None
) -> None:
    """config.json, the step-0 checkpoint and the frozen index (with its document tower)."""
    index = IndexStore(os.path.join(workdir, INDEX_DIR), keep=config.index.keep)
    if tower is not None:
        save_tower(index.root, 0, jax.tree.map(np.asarray, tower))
    index.publish(0, emb, searcher)
    save_config(config, workdir)
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    save_checkpoint(os.path.join(workdir, CHECKPOINT_DIR), 0, create_state(config, params), spec)
