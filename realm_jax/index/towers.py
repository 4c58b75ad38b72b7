"""The document tower beside each published index step (``<index>/towers/<step>.npz``).

REALM embeds a query with the embedder *of the index snapshot* it searches (docs/DESIGN.md 2.4), so
whoever publishes an index (the trainer or the refresher) writes that tower first; the trainer
then swaps index and tower together without restoring a checkpoint between steps.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import traverse_util

from realm_jax.index.store import IndexStore
from realm_jax.utils.jsonl import atomic_write

TOWERS_DIR = "towers"


def _tower_path(index_dir: str, step: int) -> str:
    return os.path.join(index_dir, TOWERS_DIR, f"{step}.npz")


def save_tower(index_dir: str, step: int, tower: dict) -> None:
    """Writes the tower of ``step`` atomically (before its index is published)."""
    os.makedirs(os.path.join(index_dir, TOWERS_DIR), exist_ok=True)
    flat = traverse_util.flatten_dict(jax.device_get(tower), sep="/")
    with atomic_write(_tower_path(index_dir, step), "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})


def load_tower(index_dir: str, step: int) -> dict | None:
    path = _tower_path(index_dir, step)
    if not os.path.isfile(path):
        return None
    with np.load(path) as z:
        return traverse_util.unflatten_dict({k: z[k] for k in z.files}, sep="/")


def prune_towers(store: IndexStore) -> None:
    """Removes the towers of index steps the store no longer keeps, and any temporary file a
    killed publisher left (one publisher writes at a time, and it is the caller)."""
    kept = set(store.steps())
    directory = os.path.join(store.root, TOWERS_DIR)
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        stale = name.endswith(".tmp") or (
            name.endswith(".npz") and int(name.split(".")[0]) not in kept
        )
        if stale:
            os.remove(os.path.join(directory, name))
