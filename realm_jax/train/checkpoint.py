"""Trainer checkpoints (orbax) and the part of them the re-indexer reads.

Layout of a checkpoint directory:
  <dir>/<step>/default/...  orbax PyTree ``{"step", "params", "opt_state"}`` (a TrainState minus tx)
  <dir>/embedder.json       the document tower's shape (``EmbedderSpec``), written once
  <dir>/DONE                the trainer has finished: the refresher indexes the last step and exits

Orbax writes each step into a temporary directory and renames it when complete, so a reader only
ever lists finished steps. ``restore_embedder_params`` reads the document tower's arrays alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from realm_jax.data.jsonl import atomic_write
from realm_jax.models.bert import BertConfig
from realm_jax.models.realm import RealmConfig
from realm_jax.models.retriever import Embedder
from realm_jax.train.state import TrainState

SPEC_FILE = "embedder.json"
DONE_FILE = "DONE"
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


def write_embedder_spec(directory: str, spec: EmbedderSpec) -> None:
    os.makedirs(directory, exist_ok=True)
    with atomic_write(os.path.join(directory, SPEC_FILE)) as f:
        json.dump(spec.to_dict(), f, indent=1)


def read_embedder_spec(directory: str) -> EmbedderSpec:
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; the trainer writes it with its first checkpoint")
    with open(path, encoding="utf-8") as f:
        return EmbedderSpec.from_dict(json.load(f))


def mark_done(directory: str) -> None:
    """Tells the refresher the trainer has finished (it indexes the last step, then exits)."""
    with atomic_write(os.path.join(directory, DONE_FILE)) as f:
        f.write("done\n")


def is_done(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, DONE_FILE))


class Checkpoints:
    """One orbax CheckpointManager over ``directory``: the trainer saves, the refresher reads."""

    def __init__(
        self,
        directory: str,
        max_to_keep: int | None = 3,
        async_save: bool = True,
        read_only: bool = False,
        embedder_spec: EmbedderSpec | None = None,
    ):
        self.directory = os.path.abspath(directory)
        if read_only:
            # Spelled out: orbax warns when read_only overrides its saving defaults.
            options = ocp.CheckpointManagerOptions(
                read_only=True, save_interval_steps=0, create=False, max_to_keep=None
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
            )
            if embedder_spec is not None:
                write_embedder_spec(self.directory, embedder_spec)
        self._manager = ocp.CheckpointManager(
            self.directory, item_handlers=ocp.PyTreeCheckpointHandler(), options=options
        )

    def save(self, step: int, state: TrainState) -> None:
        """Saves a host (unreplicated) train state; with async_save the write runs in background."""
        tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
        self._manager.save(step, args=ocp.args.PyTreeSave(tree))

    def latest_step(self) -> int | None:
        """The newest finished step on disk (re-listed on every call), or None."""
        if not os.path.isdir(self.directory):
            return None
        self._manager.reload()
        return self._manager.latest_step()

    def restore_embedder_params(self, step: int) -> dict:
        """The document tower's ``{"params": ...}`` of ``step`` as numpy arrays (reads no more)."""
        params_meta = self._manager.item_metadata(step).tree["params"]
        item = jax.tree.map(lambda _: 0, embedder_params(params_meta)["params"])
        for key in reversed(("params", *embedder_path(params_meta))):
            item = {key: item}  # the tower's place in the saved tree; the rest is not read
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        out = self._manager.restore(
            step, args=ocp.args.PyTreeRestore(item, restore_args=restore_args, partial_restore=True)
        )
        return embedder_params(out["params"])

    def restore_state(self, step: int, template: TrainState) -> TrainState:
        """The full train state of ``step``, shaped like ``template`` (to resume training)."""
        tree = {"step": template.step, "params": template.params, "opt_state": template.opt_state}
        restore_args = ocp.checkpoint_utils.construct_restore_args(tree)  # template's shardings
        out = self._manager.restore(
            step, args=ocp.args.PyTreeRestore(tree, restore_args=restore_args)
        )
        return template.replace(**out)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def save_checkpoint(
    directory: str, step: int, state: TrainState, embedder_spec: EmbedderSpec | None = None
) -> None:
    """Saves ``state`` at ``step`` synchronously (a one-off; loops keep a ``Checkpoints``)."""
    checkpoints = Checkpoints(directory, async_save=False, embedder_spec=embedder_spec)
    checkpoints.save(step, state)
    checkpoints.close()


def restore_embedder_params(directory: str, step: int | None = None) -> dict:
    """The document tower's params at ``step`` (default: the newest step) as numpy arrays."""
    checkpoints = Checkpoints(directory, read_only=True)
    step = checkpoints.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{directory}: no finished checkpoint")
    return checkpoints.restore_embedder_params(step)
