"""A stage's start: its corpus packed into blocks, its model, and step-0 parameters (random, BERT
weights from MiniLM or a local HF checkpoint, or the trained towers of earlier stages: ICT's
retriever, the MLM warm start's encoder, a REALM run)."""

from __future__ import annotations

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.assets import minilm_dir
from realm_jax.convert import load_hf_bert
from realm_jax.data.input_pipeline import prepare_blocks
from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import ConfigError
from realm_jax.models.bert import BertConfig
from realm_jax.models.realm import EmbedderSpec, openqa_params_from_pretrained
from realm_jax.run.config import check_workdir
from realm_jax.run.files import save_config
from realm_jax.run.model_setup import (
    random_params,
    realm_config,
    restore_run_params,
    set_subtree,
    stage_model,
)


def setup_stage(config: ConfigDict, workdir: str, spans: bool = False):
    """Packs the corpus, builds the model and its step-0 params, and writes ``config.json``.

    ``config`` comes from ``run.config.resolve_config``; the workdir must hold no other run.
    Returns ``(tokenizer, store, model, params, embedder_spec)``.
    """
    check_workdir(config, workdir)
    tokenizer = shared_tokenizer()
    store = prepare_blocks(config, config.data.blocks_dir, tokenizer, salient_spans=spans)
    model = stage_model(config)
    params, sources = initial_params(config, jax.random.PRNGKey(config.seed))
    save_config(config, workdir)  # only once the run can start: a bad input leaves no workdir
    if jax.process_index() == 0:
        print(f"{config.stage}: {len(store)} blocks; initial params: {sources}", flush=True)
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    return tokenizer, store, model, params, spec


def initial_params(config: ConfigDict, rng: jax.Array) -> tuple[dict, dict]:
    """Step-0 parameters of the stage and where they came from (``{"part": source}``)."""
    params = random_params(config, rng)
    sources = {"all": "random"}
    bert = pretrained_bert(config.init.bert, realm_config(config.model).bert)
    if bert is not None:
        for path in _bert_paths(config, params):
            params = set_subtree(params, ("params", *path), bert["params"])
        # HF BertModel checkpoints (MiniLM too) carry no MLM head: REALM's starts random.
        sources = {"bert towers": config.init.bert}
    if config.stage == "realm" and config.init.ict_workdir:
        _, ict, step = restore_run_params(config.init.ict_workdir)
        params = set_subtree(params, ("params", "retriever"), _same_towers(ict["params"], params))
        sources["retriever"] = f"{config.init.ict_workdir} step {step}"
    if config.stage == "realm" and config.init.get("mlm_workdir"):
        _, warm, step = restore_run_params(config.init.mlm_workdir)
        if set(warm["params"]) != {"encoder"}:
            raise ConfigError(f"init.mlm_workdir={config.init.mlm_workdir}: not an MLM run")
        shapes = lambda tree: jax.tree.map(np.shape, tree)
        if shapes(warm["params"]["encoder"]) != shapes(params["params"]["encoder"]):
            raise ConfigError(f"init.mlm_workdir={config.init.mlm_workdir}: its encoder has "
                              f"another shape than this config's model")
        params = set_subtree(params, ("params", "encoder"), warm["params"]["encoder"])
        sources["encoder"] = f"{config.init.mlm_workdir} step {step}"
    if config.stage == "openqa":
        params, sources = _openqa_init(config, params, sources)
    return params, sources


def _same_towers(retriever: dict, params: dict) -> dict:
    wanted = params["params"]["retriever"]
    if set(retriever) != set(wanted):
        raise ConfigError(
            f"retriever towers {sorted(retriever)} do not match model.share_embedders "
            f"(wants {sorted(wanted)})"
        )
    return retriever


def _openqa_init(config: ConfigDict, params: dict, sources: dict) -> tuple[dict, dict]:
    """Fine-tuning starts from a REALM run (REALM 3.4) or an ICT run (ORQA), else from BERT.

    ``init.pretrain_parts`` mixes them (REALM's Table 2): "retriever" takes only the REALM run's
    retriever (the reader stays init.bert's), "encoder" only its encoder (the retriever comes
    from init.ict_workdir).
    """
    init = config.init
    parts = init.get("pretrain_parts", "all")
    if parts not in ("all", "retriever", "encoder"):
        raise ConfigError(f"init.pretrain_parts={parts!r}: expected all, retriever or encoder")
    if init.pretrain_workdir and init.ict_workdir and parts != "encoder":
        raise ConfigError("set init.pretrain_workdir or init.ict_workdir, not both "
                          "(unless init.pretrain_parts=encoder)")
    if parts != "all" and not init.pretrain_workdir:
        raise ConfigError(f"init.pretrain_parts={parts} needs init.pretrain_workdir")
    if init.pretrain_workdir:
        _, pretrained, step = restore_run_params(init.pretrain_workdir)
        if pretrained["params"].keys() != {"retriever", "encoder"}:
            raise ConfigError(f"init.pretrain_workdir={init.pretrain_workdir}: not a REALM run")
        mixed = openqa_params_from_pretrained(pretrained, params)
        source = f"{init.pretrain_workdir} step {step}"
        if parts == "all":
            params, sources = mixed, {"retriever, reader bert": source, "span head": "random"}
        elif parts == "retriever":
            retriever = mixed["params"]["retriever"]
            params = set_subtree(params, ("params", "retriever"), retriever)
            sources["retriever"] = source
        else:
            params = set_subtree(params, ("params", "reader", "bert"),
                                 mixed["params"]["reader"]["bert"])
            sources["reader bert"] = source
    if init.ict_workdir:
        _, ict, step = restore_run_params(init.ict_workdir)
        params = set_subtree(params, ("params", "retriever"), _same_towers(ict["params"], params))
        sources["retriever"] = f"{init.ict_workdir} step {step}"
    return params, sources


def retriever_source(config: ConfigDict) -> str | None:
    """The run whose retriever an open-QA run starts from (its final index is reused)."""
    init = config.init
    if init.pretrain_workdir and init.get("pretrain_parts", "all") != "encoder":
        return init.pretrain_workdir
    return init.ict_workdir


def _bert_paths(config: ConfigDict, params: dict) -> list[tuple[str, ...]]:
    """Where BERT towers sit in the stage's params."""
    p = params["params"]
    if config.stage == "ict":
        return [(tower, "bert") for tower in ("embedder", "query_embedder") if tower in p]
    if config.stage == "mlm":
        return [("encoder", "bert")]
    towers = [
        ("retriever", t, "bert") for t in ("embedder", "query_embedder") if t in p["retriever"]
    ]
    if config.stage == "realm":
        return [*towers, ("encoder", "bert")]
    return [*towers, ("reader", "bert")]


def pretrained_bert(init_bert: str, cfg: BertConfig) -> dict | None:
    """BERT weights for every tower (``{"params": ...}``), cut to ``cfg``'s layers; None: random."""
    if init_bert == "random":
        return None
    path = minilm_dir() if init_bert == "minilm" else init_bert
    loaded_cfg, weights = load_hf_bert(path)
    if loaded_cfg.hidden_size != cfg.hidden_size or loaded_cfg.vocab_size != cfg.vocab_size:
        raise ConfigError(
            f"init.bert={init_bert!r} is {loaded_cfg.hidden_size} wide over "
            f"{loaded_cfg.vocab_size} words; model.bert wants {cfg.hidden_size} / {cfg.vocab_size}"
        )
    kept = {
        k: v
        for k, v in weights["params"].items()
        if not k.startswith("layer_") or int(k.split("_")[1]) < cfg.num_hidden_layers
    }
    return {"params": kept}
