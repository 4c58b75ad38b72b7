"""The run directory: every file a run writes under ``--workdir``, named in one place.

  <workdir>/config.json      the resolved config the run trained with (``save_config``)
  <workdir>/checkpoints/     orbax steps, ``embedder.json`` and ``DONE`` (``run/checkpoints.py``)
  <workdir>/index/           published MIPS indexes and their towers (``index/store.py``)
  <workdir>/metrics.jsonl    one JSON line per logged step and evaluation (also TensorBoard events)
  <workdir>/serving/         corpus versions made by ``realm-jax add|replace|delete|index``
  <workdir>/released.json    provenance of a run converted from released artifacts
  <workdir>/.lock            the writer lock of corpus edits and re-indexing (``run/lock.py``)

Block caches are shared between runs: ``<parent of workdir>/cache/blocks-<hash>``
(``data/input_pipeline.blocks_dir``).
"""

from __future__ import annotations

import dataclasses
import os

import jax
from ml_collections import ConfigDict

from realm_jax.utils.jsonl import atomic_write, read_json

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
INDEX_DIR = "index"
METRICS_FILE = "metrics.jsonl"
SERVING_DIR = "serving"
RELEASED_FILE = "released.json"
LOCK_FILE = ".lock"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: str

    @property
    def config(self) -> str:
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, CHECKPOINT_DIR)

    @property
    def index(self) -> str:
        return os.path.join(self.root, INDEX_DIR)

    @property
    def metrics(self) -> str:
        return os.path.join(self.root, METRICS_FILE)

    @property
    def serving(self) -> str:
        return os.path.join(self.root, SERVING_DIR)

    @property
    def released(self) -> str:
        return os.path.join(self.root, RELEASED_FILE)

    @property
    def lock(self) -> str:
        return os.path.join(self.root, LOCK_FILE)

    def is_run(self) -> bool:
        return os.path.isfile(self.config)


def save_config(config: ConfigDict, workdir: str) -> None:
    """Writes the run's config beside its checkpoints (a loaded run rebuilds its model from it)."""
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() != 0:  # one writer on a shared filesystem
        return
    with atomic_write(RunDir(workdir).config) as f:
        f.write(config.to_json_best_effort(indent=1, sort_keys=True) + "\n")


def read_run_config(workdir: str) -> ConfigDict:
    """The config a stage ran with (``<workdir>/config.json``, blocks dir resolved)."""
    path = RunDir(workdir).config
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; is {workdir} a realm_jax run directory?")
    return ConfigDict(read_json(path))
