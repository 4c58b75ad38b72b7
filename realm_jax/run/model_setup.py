"""Models and their starting parameters from a stage's config (no training, no data).

One function per question a run asks: which BERT shape (``bert_config``), which model
(``stage_model``), how many parameters (``param_counts``, via ``jax.eval_shape``), its optimiser
(``create_state``) and another run's trained parameters (``restore_run_params``). Step-0
parameters (BERT weights, earlier stages) are ``train/init.py``'s.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from realm_jax.assets import minilm_dir
from realm_jax.errors import ConfigError
from realm_jax.models.bert import BertConfig, tiny_config
from realm_jax.models.realm import (
    EncoderMlmModel,
    OpenQAModel,
    RealmConfig,
    RealmPretrainModel,
)
from realm_jax.models.retriever import Retriever
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.run.files import CHECKPOINT_DIR, RunDir, read_run_config
from realm_jax.run.state import TrainState, bert_adamw, lr_scale_predicate, trainable_predicate

log = logging.getLogger(__name__)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def bert_config(model: ConfigDict) -> BertConfig:
    """The BERT shape named by ``config.model`` (with its layer and dropout overrides)."""
    if model.bert == "base":
        cfg = BertConfig()  # BERT-base uncased: 12 layers, 768 wide, 110M parameters
    elif model.bert == "tiny":
        cfg = tiny_config()
    elif model.bert == "minilm":
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
        remat=model.get("remat", False),
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
            cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps, cfg.share_embedders, dtype,
            remat=cfg.remat,
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


def set_subtree(params: dict, path: tuple[str, ...], value: Any) -> dict:
    """A copy of nested dict ``params`` with ``params[path[0]]...[path[-1]] = value``."""
    if not path:
        return value
    return {**params, path[0]: set_subtree(params[path[0]], path[1:], value)}


def get_subtree(params: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        params = params[key]
    return params


def load_run(workdir: str, step: int | None = None) -> tuple[ConfigDict, nn.Module, dict, int]:
    """(config, model, params, step) of a run directory, reading the parameters only (not the
    optimiser state); by default its newest step that restores, older ones tried in turn."""
    config, params, step = restore_run_params(workdir, step)
    return config, stage_model(config), params, step


def restore_run_params(workdir: str, step: int | None = None) -> tuple[ConfigDict, dict, int]:
    """(config, params, step) of a run's checkpoint as numpy, the optimiser state not read
    (default: its newest step that restores, damaged newer ones skipped with a warning)."""
    config = read_run_config(workdir)
    checkpoints = Checkpoints(RunDir(workdir).checkpoints, read_only=True)
    try:
        if step is None:
            step, params = checkpoints.newest_that_restores(checkpoints.restore_params)
            if step is None:
                raise FileNotFoundError(f"{workdir}/{CHECKPOINT_DIR}: no finished checkpoint")
        else:
            params = checkpoints.restore_params(step)
    finally:
        checkpoints.close()
    return config, params, step


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
