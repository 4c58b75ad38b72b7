"""Checks on a stage config before a run writes anything: one ``ConfigError`` line per problem."""

from __future__ import annotations

import importlib.util
import os

from ml_collections import ConfigDict

from realm_jax.data.input_pipeline import blocks_dir
from realm_jax.errors import ConfigError
from realm_jax.run.files import RunDir, read_run_config
from realm_jax.run.model_setup import stage_model


def resolve_config(config: ConfigDict, workdir: str, stage: str) -> ConfigDict:
    """A checked copy of ``config`` for ``stage`` with its block store directory filled in."""
    if config.stage != stage:
        raise ConfigError(f"config.stage={config.stage!r}, but this is the {stage} trainer")
    if config.checkpoint_every_steps < 1 or config.log_every_steps < 1:
        raise ConfigError("checkpoint_every_steps and log_every_steps must be >= 1")
    check_config(config)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.blocks_dir = os.path.abspath(blocks_dir(config, workdir))
    return config


def check_config(config: ConfigDict) -> None:
    """Fails fast, before anything is written, on fields a run would trip over later."""
    stage_model(config)  # model.bert, model.num_hidden_layers, model.dtype
    init = config.init
    if init.bert not in ("random", "minilm") and not os.path.exists(init.bert):
        raise ConfigError(f"init.bert={init.bert!r}: not random/minilm nor an existing path")
    for key in ("ict_workdir", "pretrain_workdir", "mlm_workdir"):
        if init.get(key) and not RunDir(init[key]).is_run():
            raise ConfigError(f"init.{key}={init[key]!r}: not a run directory (no config.json)")
    if "index" in config and config.index.mode not in ("sync", "async"):
        raise ConfigError(f"index.mode={config.index.mode!r}: expected 'sync' or 'async'")
    index = config.get("index")
    if config.stage == "realm" and index.mode == "sync":
        if index.refresh_every % config.checkpoint_every_steps:  # see index/live.SyncIndex
            raise ConfigError("index.refresh_every must be a multiple of checkpoint_every_steps")
    if index is not None and (problem := swap_lag_problem(config)):
        raise ConfigError(problem)
    if config.stage == "mlm" and config.mlm.get("hard_percent", 0) > 0 and not init.ict_workdir:
        raise ConfigError("mlm.hard_percent > 0 needs init.ict_workdir (the ICT run whose "
                          "retriever ranks the hard negatives)")
    if config.optim.get("trainable") and config.stage not in ("mlm", "realm"):
        raise ConfigError(f"optim.trainable is for the mlm and realm stages, not {config.stage}")
    if config.get("realm") and config.realm.get("require_evidence") and config.data.get(
        "target_corpus"
    ):
        raise ConfigError("realm.require_evidence looks for evidence in the corpus the queries "
                          "come from; with data.target_corpus (X != Z) it cannot")
    if config.stage == "openqa":
        o = config.openqa
        if o.retriever not in ("dense", "bm25"):
            raise ConfigError(f"openqa.retriever={o.retriever!r}: expected dense or bm25")
        if o.reader_beam > o.retriever_beam:
            raise ConfigError(f"openqa.reader_beam={o.reader_beam} > retriever_beam")


def check_workdir(config: ConfigDict, workdir: str) -> None:
    """A workdir that already holds a run must hold one of this stage and model shape (a resume);
    anything else is an error before a byte is written."""
    if not RunDir(workdir).is_run():
        return
    saved = read_run_config(workdir)
    # optim.lr_scaled adds a stage to the optimiser: its state would not restore without it.
    for key in ("stage", "optim.lr_scaled", *(f"model.{k}" for k in config.model)):
        old, new = saved, config
        for part in key.split("."):
            old, new = old.get(part) if old is not None else None, new.get(part)
        if old != new:
            raise ConfigError(f"{workdir} holds a run with {key}={old!r}, but this config has "
                              f"{key}={new!r}; use a new --workdir")


def swap_lag_problem(config: ConfigDict) -> str | None:
    """Why ``index.swap_lag`` cannot work with the rest of ``config`` (one line), or None."""
    index, every = config.index, config.checkpoint_every_steps
    lag = index.get("swap_lag", 0)
    if lag < 0:
        return f"index.swap_lag={lag}: must be >= 0 (0: swap indexes in as they arrive)"
    if not lag:
        return None
    if index.mode != "async":
        return f"index.swap_lag={lag} needs index.mode='async' (sync mode is deterministic)"
    if index.get("min_index_age", 0):
        return f"index.swap_lag={lag} and index.min_index_age: set one (both hold indexes back)"
    # While step t waits for its index, up to ceil(lag / every) newer checkpoints exist (and an
    # interrupted run's one off the schedule): the refresher must still find the one it needs.
    ahead = -(-lag // every)
    keep = config.get("keep_checkpoints")
    if keep is not None and keep < ahead + 2:
        return (f"keep_checkpoints={keep} with index.swap_lag={lag} and checkpoint_every_steps="
                f"{every}: the refresher needs checkpoints up to {ahead + 1} back; keep at least "
                f"{ahead + 2}")
    if index.keep < ahead + 2:  # + the final index, published after DONE off the schedule
        return (f"index.keep={index.keep} with index.swap_lag={lag} and checkpoint_every_steps="
                f"{every}: indexes are published up to {ahead} ahead of the one in use, and a "
                f"final one; keep at least {ahead + 2}")
    return None


def load_config(configs_dir: str, spec: str) -> ConfigDict:
    """``get_config(arg)`` of ``<configs_dir>/<file>.py`` for ``spec`` = ``file.py[:arg]``."""
    name, _, arg = spec.partition(":")
    path = os.path.join(configs_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    module_spec = importlib.util.spec_from_file_location(f"_config_{name[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
