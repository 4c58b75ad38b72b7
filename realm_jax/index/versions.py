"""Corpus versions on disk: numbering, the publish order, and repair after a killed writer.

The versions of a run's corpus live in ``<workdir>/serving/corpus/`` (``<v>/`` and ``LATEST``;
what a version holds is in ``index/corpus_edit.py``). One writer at a time, holding the workdir
lock (``run/lock.py``), publishes version v = LATEST + 1 in this order:

  1. write ``<v>.tmp/`` whole (its meta.json last) and fsync every file and directory in it;
  2. rename ``<v>.tmp/`` to ``<v>/`` and fsync the corpus directory;
  3. replace LATEST with v atomically (a temporary file, fsynced, renamed over it).

An edit is acknowledged once 3 is done and its command exits 0. Readers take no lock: they read
LATEST, then only versions it has named, which are never changed or removed, so they see one whole
version. A writer killed before 3 leaves ``<v>.tmp/`` or a finished ``<v>/`` that LATEST does not
name; the next writer removes both before numbering its own (``recover_versions``): the killed
edit is wholly absent, never half there, and its number is reused. A re-index killed between
publishing its index step (``serving/index``) and its version leaves a step no version names; the
next re-index removes it (``drop_unnamed_steps``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

from realm_jax.errors import CorpusError
from realm_jax.index.store import IndexStore
from realm_jax.run.files import INDEX_DIR, SERVING_DIR
from realm_jax.utils.jsonl import atomic_write, fsync_directory
from realm_jax.utils.writes import naming

LATEST = "LATEST"
SERVING_INDEX = os.path.join(SERVING_DIR, INDEX_DIR)  # where ``reindex`` publishes, in the workdir
log = logging.getLogger(__name__)


def version_root(workdir: str) -> str:
    return os.path.join(workdir, SERVING_DIR, "corpus")


def latest_version(workdir: str) -> int | None:
    """The version LATEST names, or None before the first edit."""
    path = os.path.join(version_root(workdir), LATEST)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        raise CorpusError(f"{path}: holds {text[:20]!r}, not a corpus version number; write the "
                          "newest version directory's number into it")
    return int(text)


def next_version(workdir: str) -> tuple[int, str]:
    """The next version number and its fresh temporary directory (the caller holds the lock and
    has run ``recover_versions``, so neither exists yet)."""
    version = (latest_version(workdir) or 0) + 1
    tmp = os.path.join(version_root(workdir), f"{version}.tmp")
    os.makedirs(tmp)
    return version, tmp


def publish(workdir: str, version: int, tmp: str, meta: dict) -> None:
    """Steps 1-3 above; ``tmp`` holds every file of the version but meta.json."""
    write_version(tmp, meta)
    rename_version(tmp, os.path.join(version_root(workdir), str(version)))
    write_latest(workdir, version)


def write_version(tmp: str, meta: dict) -> None:
    """Checks the version's files are there, writes its meta.json, fsyncs the whole directory."""
    needed = ["dead.npy", "extra_emb.npy"]
    if meta["version"] in meta["deltas"]:
        needed.append(os.path.join("blocks", "meta.json"))
    missing = [n for n in needed if not os.path.isfile(os.path.join(tmp, n))]
    if missing:
        raise RuntimeError(f"{tmp}: version {meta['version']} lacks {', '.join(missing)}")
    path = os.path.join(tmp, "meta.json")
    with naming(path), open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    for parent, _, names in os.walk(tmp, topdown=False):
        for name in names:
            path = os.path.join(parent, name)
            with naming(path), open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(parent)


def rename_version(tmp: str, final: str) -> None:
    os.replace(tmp, final)
    fsync_directory(os.path.dirname(final))


def write_latest(workdir: str, version: int) -> None:
    with atomic_write(os.path.join(version_root(workdir), LATEST)) as f:
        f.write(f"{version}\n")


def discard(path: str) -> None:
    """Removes a directory: renamed to a hidden ``.<name>.del`` first (gone at once), then
    deleted; a ``.del`` left by a kill is removed by the next writer."""
    if not os.path.exists(path):
        return
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f".{name}.del")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_leftovers(directory: str) -> None:
    """The temporary files and directories (``*.tmp``, ``*.del``) of a killed writer."""
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        path = os.path.join(directory, name)
        if not name.endswith((".tmp", ".del")):
            continue
        if os.path.isdir(path):
            if not name.startswith("."):
                log.warning("removing %s: left by a writer stopped before publishing it", path)
            shutil.rmtree(path)
        else:
            os.remove(path)


def recover_versions(workdir: str) -> None:
    """Under the writer lock: removes what a killed publish left, so that LATEST names the newest
    version. A ``<v>.tmp/`` goes, and so does a finished ``<v>/`` beyond LATEST: its edit was never
    acknowledged (its command did not exit 0), and publishing it now would apply an edit that its
    user saw fail and may be retrying."""
    root = version_root(workdir)
    _remove_leftovers(root)
    latest = latest_version(workdir) or 0
    for name in sorted(os.listdir(root) if os.path.isdir(root) else []):
        if name.isdigit() and int(name) > latest:
            log.warning("removing corpus version %s: its publish stopped before LATEST named it",
                        os.path.join(root, name))
            discard(os.path.join(root, name))


def drop_unnamed_steps(store: IndexStore, meta: dict) -> None:
    """Under the writer lock: the steps of ``serving/index`` newer than the one the newest version
    (``meta``) names, all of them when it names the run's own index, were published by a re-index
    killed before its version; no version will name them, so they are removed."""
    _remove_leftovers(store.root)
    named = meta["index"]["step"] if meta["index"]["dir"] == SERVING_INDEX else None
    for step in store.steps():
        if named is None or step > named:
            log.warning("removing index %s: no corpus version names it", store.step_dir(step))
            discard(store.step_dir(step))
