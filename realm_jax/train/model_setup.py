"""Models and their starting parameters from a stage's config (no training, no data).

One function per question a loop asks: which BERT shape (``bert_config``), which model
(``stage_model``), what its parameters are at step 0 (``initial_params``: random, BERT weights,
or another stage's checkpoint), and how many there are (``param_counts``, via ``jax.eval_shape``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from realm_jax.models.bert import BertConfig, tiny_config
from realm_jax.models.realm import (
    EncoderMlmModel,
    OpenQAModel,
    RealmConfig,
    RealmPretrainModel,
    openqa_params_from_pretrained,
)
from realm_jax.models.retriever import Retriever
from realm_jax.train.state import (
    TrainState,
    bert_adamw,
    lr_scale_predicate,
    trainable_predicate,
)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class ConfigError(ValueError):
    """A config that cannot be run; the message is one line naming the field."""


def bert_config(model: ConfigDict) -> BertConfig:
    """The BERT shape named by ``config.model`` (with its layer and dropout overrides)."""
    if model.bert == "base":
        cfg = BertConfig()  # BERT-base uncased: 12 layers, 768 wide, 110M parameters
    elif model.bert == "tiny":
        cfg = tiny_config()
    elif model.bert == "minilm":
        from realm_jax.convert import minilm_dir

        cfg = BertConfig.from_json_file(os.path.join(minilm_dir(), "config.json"))
    elif os.path.isfile(os.path.join(model.bert, "config.json")):
        cfg = BertConfig.from_json_file(os.path.join(model.bert, "config.json"))
    else:
        raise ConfigError(f"model.bert={model.bert!r}: not base/tiny/minilm nor a config.json dir")
    if model.num_hidden_layers is not None:
        if not 1 <= model.num_hidden_layers <= cfg.num_hidden_layers:
            raise ConfigError(
                f"model.num_hidden_layers={model.num_hidden_layers}: expected 1.."
                f"{cfg.num_hidden_layers}"
            )
        cfg = cfg.replace(num_hidden_layers=model.num_hidden_layers)
    if model.get("hidden_act") is not None:
        try:
            cfg = cfg.replace(hidden_act=model.hidden_act)
        except ValueError as e:
            raise ConfigError(f"model.{e}") from None
    if model.dropout is not None:
        cfg = cfg.replace(
            hidden_dropout_prob=model.dropout, attention_probs_dropout_prob=model.dropout
        )
    return cfg


def realm_config(model: ConfigDict) -> RealmConfig:
    return RealmConfig(
        bert_config(model),
        proj_size=model.proj_size,
        share_embedders=model.share_embedders,
        span_hidden_size=model.span_hidden_size,
        max_span_width=model.max_span_width,
    )


def model_dtype(model: ConfigDict) -> Any:
    if model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={model.dtype!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[model.dtype]


def stage_model(config: ConfigDict) -> nn.Module:
    """The module a stage trains: Retriever (ICT), RealmPretrainModel, or OpenQAModel."""
    cfg, dtype = realm_config(config.model), model_dtype(config.model)
    if config.stage == "ict":
        return Retriever(
            cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps, cfg.share_embedders, dtype
        )
    if config.stage == "realm":
        return RealmPretrainModel(cfg, dtype)
    if config.stage == "openqa":
        return OpenQAModel(cfg, dtype)
    if config.stage == "mlm":
        return EncoderMlmModel(cfg, dtype)
    raise ConfigError(f"stage={config.stage!r}: expected ict, mlm, realm or openqa")


def example_inputs(config: ConfigDict) -> tuple:
    """Smallest inputs with the stage's structure (params do not depend on their sizes)."""
    ids = jnp.ones((1, 8), jnp.int32)
    cands = jnp.ones((1, 2, 8), jnp.int32)
    if config.stage == "ict":
        return ids, ids, cands, cands
    if config.stage == "realm":
        return ids, ids, cands, cands, cands, cands, cands, cands, jnp.ones((1, 1), jnp.int32)
    if config.stage == "mlm":
        return ids, ids, ids, jnp.ones((1, 1), jnp.int32)
    beam_emb = jnp.zeros((1, 2, config.model.proj_size), jnp.float32)
    return ids, ids, beam_emb, cands, cands, cands, cands


def random_params(config: ConfigDict, rng: jax.Array) -> dict:
    """Freshly initialised parameters of the stage's model."""
    model = stage_model(config)
    return jax.jit(model.init)(rng, *example_inputs(config))


def abstract_params(config: ConfigDict) -> dict:
    """Parameter shapes and dtypes of the stage's model, without computing any."""
    model = stage_model(config)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), *example_inputs(config))


def count_params(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def param_counts(config: ConfigDict) -> dict[str, int]:
    """Parameters per top-level part (``retriever/embedder``, ``encoder``, ...) and in total."""
    params = abstract_params(config)["params"]
    counts = {}
    for name, sub in params.items():
        if config.stage != "ict" and isinstance(sub, dict) and name == "retriever":
            counts.update({f"retriever/{k}": count_params(v) for k, v in sub.items()})
        else:
            counts[name] = count_params(sub)
    counts["total"] = count_params(params)
    return counts


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
    from realm_jax.convert import load_hf_bert, minilm_dir

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


def set_subtree(params: dict, path: tuple[str, ...], value: Any) -> dict:
    """A copy of nested dict ``params`` with ``params[path[0]]...[path[-1]] = value``."""
    if not path:
        return value
    return {**params, path[0]: set_subtree(params[path[0]], path[1:], value)}


def get_subtree(params: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        params = params[key]
    return params


def read_run_config(workdir: str) -> ConfigDict:
    """The config a stage ran with (``<workdir>/config.json``, blocks dir resolved)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; is {workdir} a realm_jax run directory?")
    with open(path, encoding="utf-8") as f:
        return ConfigDict(json.load(f))


def restore_run_params(workdir: str, step: int | None = None) -> tuple[ConfigDict, dict, int]:
    """(config, params, step) of another run's checkpoint (default: its latest that restores,
    skipping damaged newer ones with a warning), as numpy."""
    from realm_jax.train.checkpoint import Checkpoints

    config = read_run_config(workdir)
    shapes = abstract_params(config)
    tx = optimizer_template(config)  # only the optimiser state's structure matters
    zeros = lambda s: np.zeros(s.shape, s.dtype)
    template = TrainState(
        step=np.zeros((), np.int32),
        params=jax.tree.map(zeros, shapes),
        opt_state=jax.tree.map(zeros, jax.eval_shape(tx.init, shapes)),
        tx=tx,
    )
    checkpoints = Checkpoints(os.path.join(workdir, CHECKPOINT_DIR), read_only=True)
    try:
        if step is None:
            step, state = checkpoints.restore_latest_good(template)
            if step is None:
                raise FileNotFoundError(f"{workdir}/{CHECKPOINT_DIR}: no finished checkpoint")
        else:
            state = checkpoints.restore_state(step, template)
    finally:
        checkpoints.close()
    return config, state.params, step


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
                              f"another shape than this config's model")  # fmt: skip
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
                          "(unless init.pretrain_parts=encoder)")  # fmt: skip
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
                                 mixed["params"]["reader"]["bert"])  # fmt: skip
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


def decayed_predicate(config: ConfigDict):
    """Which parameter paths weight decay applies to (with ``steps.freeze``, the ones that
    move): ``optim.trainable``'s, less the retriever
    in REALM's control run (``realm.retriever_gradient=False``: its gradient is stopped, and
    weight decay must not move it either, so it stays exactly the retriever it started from)."""
    trainable = trainable_predicate(config.optim.get("trainable"))
    if config.stage == "realm" and not config.realm.get("retriever_gradient", True):
        return lambda path: trainable(path) and not path.startswith("params/retriever/")
    return trainable


def _lr_scale(config: ConfigDict):
    o = config.optim
    return lr_scale_predicate(o.get("lr_scaled"), o.get("lr_scale", 1.0))


def optimizer_template(config: ConfigDict):
    """An optimiser whose state has the structure of ``config``'s (to restore checkpoints)."""
    return bert_adamw(1.0, 1, lr_scale=_lr_scale(config))


def create_state(config: ConfigDict, params: dict) -> TrainState:
    """A TrainState over ``params`` with BERT's AdamW recipe from ``config.optim``."""
    o = config.optim
    tx = bert_adamw(
        o.learning_rate, config.num_train_steps, o.warmup_steps, o.weight_decay, o.max_grad_norm,
        decayed_predicate(config),
        _lr_scale(config),
    )
    return TrainState.create(params, tx)
