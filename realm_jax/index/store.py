"""A directory of published indexes, written so a reader never sees a half-written one.

Layout (one writer, the refresher; any number of readers):
  <root>/<step>/embeddings.npy  block embeddings [N, D] (bfloat16 is stored as its uint16 bits)
  <root>/<step>/searcher/       the searcher's own files (ScaNN assets; empty for exact search)
  <root>/<step>/meta.json       step, created, num_blocks, dim, dtype, searcher, recall, and the
                                size, SHA-256 and sampled SHA-256 of every other file
  <root>/LATEST                 the newest published step: publishing *is* updating this file

``publish`` writes ``<step>.tmp/``, fsyncs every file and directory, renames it to ``<step>/``,
then replaces LATEST atomically and prunes all but the newest ``keep``. A publish that fails (a
full disk, an I/O error: an OSError naming the file) removes its ``<step>.tmp/``; the published
steps are untouched. Readers take the newest step <= LATEST that verifies; a damaged one is
skipped with a warning naming it.

Checks: the checksums are computed once, at publish. A load checks by default every file's size
and a SHA-256 of ``SAMPLES`` evenly spaced 64 KiB pieces of it (the whole of a file up to 1 MiB):
a truncated, swapped or overwritten file is caught without reading gigabytes (13.35M blocks x 128
are 3.4-6.8 GB); ``full_check=True`` (``realm-jax index --verify``) reads every byte. Indexes
published before the sampled digest existed are checked by size only unless checked in full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import ScannSearcher
from realm_jax.index.searcher import BFLOAT16, Searcher, release_pages
from realm_jax.utils.array_dir import write_npy_header
from realm_jax.utils.jsonl import atomic_write
from realm_jax.utils.writes import naming, write_array_bytes

LATEST = "LATEST"
META = "meta.json"
EMBEDDINGS = "embeddings.npy"
SEARCHER_DIR = "searcher"
FORMAT_VERSION = 1
log = logging.getLogger(__name__)
PhaseFn = Callable[[str], None]


class IndexCorrupt(Exception):
    """An index directory that fails verification; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class LoadedIndex:
    """A verified index: its step, meta.json, embeddings (memory-mapped) and searcher."""

    step: int
    directory: str
    meta: dict[str, Any]
    block_emb: np.ndarray  # [N, D]
    searcher: Searcher
    tower: dict | None = None  # the document tower that embedded it, when published beside it


class IndexStore:
    """Published indexes under ``root``: atomic publish, verified load, pruning to ``keep``."""

    def __init__(self, root: str, keep: int = 3, full_check: bool = False):
        if keep < 1:
            raise ValueError(f"keep={keep}: at least the newest index must be kept")
        self.root = os.path.abspath(root)
        self.keep = keep
        self.full_check = full_check  # every byte's SHA-256 on load, else sizes + sampled digest

    def step_dir(self, step: int) -> str:
        return os.path.join(self.root, str(step))

    def latest_step(self) -> int | None:
        """The step LATEST points to, or None before the first publish."""
        try:
            with open(os.path.join(self.root, LATEST), encoding="utf-8") as f:
                return int(f.read().strip())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("%s: unreadable, treated as no index published", self.root + "/LATEST")
            return None

    def steps(self) -> list[int]:
        """Every renamed (complete when written) step directory, ascending."""
        if not os.path.isdir(self.root):
            return []
        return sorted(int(name) for name in os.listdir(self.root) if name.isdigit())

    def publish(
        self,
        step: int,
        block_emb: np.ndarray,
        searcher: Searcher,
        extra: dict | None = None,
        on_phase: PhaseFn | None = None,
        embeddings_file: str | None = None,
    ) -> dict:
        """Writes block_emb [N, D] and ``searcher`` as index ``step``; returns its meta.

        ``embeddings_file``: an .npy in the store's format already holding block_emb (an embedding
        pass's output, on the same filesystem); it is moved in instead of written again.
        """
        phase = on_phase or (lambda name: None)
        latest = self.latest_step()
        if latest is not None and step < latest:
            raise ValueError(f"step {step} is older than the published index {latest}")
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, f"{step}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed refresher
        os.makedirs(os.path.join(tmp, SEARCHER_DIR))
        try:
            meta = self._write(tmp, step, block_emb, searcher, extra, phase, embeddings_file)
            phase("publish:rename")
            final = self.step_dir(step)
            if os.path.exists(final):  # re-publishing a step: move the old copy out of sight first
                _remove_dir(final, self.root)
            os.replace(tmp, final)
        except BaseException:  # a full disk, an I/O error, an interrupt: no <step>.tmp is left
            moved = os.path.join(tmp, EMBEDDINGS)
            if embeddings_file is not None and os.path.exists(moved):
                with contextlib.suppress(OSError):  # the pass keeps its output
                    os.replace(moved, embeddings_file)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_path(self.root)
        phase("publish:latest")
        with atomic_write(os.path.join(self.root, LATEST)) as f:
            f.write(f"{step}\n")
        phase("publish:prune")
        self.prune()
        return meta

    def _write(
        self, tmp: str, step: int, block_emb: np.ndarray, searcher: Searcher, extra: dict | None,
        phase: PhaseFn, embeddings_file: str | None,
    ) -> dict:
        """Writes index ``step`` into ``tmp`` (its files, then meta.json), fsynced; its meta."""
        phase("publish:embeddings")
        dtype = np.dtype(block_emb.dtype)
        if embeddings_file is not None:
            on_disk = np.load(embeddings_file, mmap_mode="r")
            if on_disk.shape != block_emb.shape or on_disk.dtype.itemsize != dtype.itemsize:
                raise ValueError(f"{embeddings_file}: {on_disk.shape} is not block_emb's shape")
            del on_disk
            os.replace(embeddings_file, os.path.join(tmp, EMBEDDINGS))
        else:
            _write_npy(os.path.join(tmp, EMBEDDINGS), block_emb)
        phase("publish:searcher")
        searcher.save(os.path.join(tmp, SEARCHER_DIR), shared_dataset=f"../{EMBEDDINGS}")
        phase("publish:checksum")
        meta = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "num_blocks": int(block_emb.shape[0]),
            "dim": int(block_emb.shape[1]),
            "dtype": "bfloat16" if dtype == BFLOAT16 else dtype.name,
            "searcher": searcher.kind,
            "recall": dict(getattr(searcher, "recall", {}) or {}),
            "files": {rel: _file_record(os.path.join(tmp, rel)) for rel in _files(tmp)},
            **(extra or {}),
        }
        phase("publish:fsync")
        for rel in meta["files"]:
            _fsync_path(os.path.join(tmp, rel))
        path = os.path.join(tmp, META)
        with naming(path), open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_path(os.path.join(tmp, SEARCHER_DIR))
        _fsync_path(tmp)
        return meta

    def prune(self) -> None:
        """Deletes all but the newest ``keep`` published steps (each renamed away, then removed)."""
        latest = self.latest_step()
        if latest is None:
            return
        published = [s for s in self.steps() if s <= latest]
        for step in published[: -self.keep]:
            _remove_dir(self.step_dir(step), self.root)

    def verify(self, step: int, full: bool | None = None) -> dict:
        """meta.json of ``step`` after checking every file (``full``: default ``full_check``;
        True: size and SHA-256 of every byte; False: size and sampled SHA-256); else IndexCorrupt.
        """
        full = self.full_check if full is None else full
        directory = self.step_dir(step)
        try:
            with open(os.path.join(directory, META), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise IndexCorrupt(f"{directory}: unreadable {META} ({e})") from None
        if meta.get("format_version") != FORMAT_VERSION or meta.get("step") != step:
            raise IndexCorrupt(
                f"{directory}: {META} is not format {FORMAT_VERSION} for step {step}"
            )
        if EMBEDDINGS not in meta.get("files", {}):
            raise IndexCorrupt(f"{directory}: {META} lists no {EMBEDDINGS}")
        for rel, want in meta["files"].items():
            path = os.path.join(directory, rel)
            if not os.path.isfile(path):
                raise IndexCorrupt(f"{directory}: missing file {rel}")
            size = os.path.getsize(path)
            if size != want["bytes"]:
                raise IndexCorrupt(f"{directory}: {rel} has {size} bytes, not {want['bytes']}")
            if full and _sha256(path) != want["sha256"]:
                raise IndexCorrupt(f"{directory}: bad checksum for {rel}")
            sampled = want.get("sample_sha256")
            if not full and sampled is not None and _sample_sha256(path) != sampled:
                raise IndexCorrupt(f"{directory}: bad checksum for {rel} (sampled)")
        return meta

    def load(self, step: int | None = None, **searcher_options) -> LoadedIndex | None:
        """The newest valid index at or below ``step`` (default LATEST), or None.

        Each damaged candidate is skipped with a warning naming it. ``searcher_options`` go to
        the searcher's ``load`` (e.g. ``devices`` for exact search).
        """
        limit = self.latest_step() if step is None else step
        if limit is None:
            return None
        for candidate in sorted((s for s in self.steps() if s <= limit), reverse=True):
            try:
                return self._open(candidate, self.verify(candidate), searcher_options)
            except (IndexCorrupt, OSError, ValueError) as e:
                log.warning("skipping index %s: %s", self.step_dir(candidate), e)
        return None

    def _open(self, step: int, meta: dict, searcher_options: dict) -> LoadedIndex:
        directory = self.step_dir(step)
        block_emb = np.load(os.path.join(directory, EMBEDDINGS), mmap_mode="r")
        if meta["dtype"] == "bfloat16":
            block_emb = block_emb.view(BFLOAT16)
        if block_emb.shape != (meta["num_blocks"], meta["dim"]):
            raise IndexCorrupt(f"{directory}: embeddings {block_emb.shape} disagree with {META}")
        searcher = load_searcher(
            meta["searcher"], os.path.join(directory, SEARCHER_DIR), block_emb, searcher_options
        )
        return LoadedIndex(step, directory, meta, block_emb, searcher)

    def recover(self) -> None:
        """Writer start-up: drop leftovers of a killed publish, finish an interrupted one, prune."""
        if not os.path.isdir(self.root):
            return
        for name in os.listdir(self.root):  # <step>.tmp/, .<step>.del/, .LATEST.*.tmp
            path = os.path.join(self.root, name)
            if name.endswith((".tmp", ".del")):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        latest = self.latest_step()
        for step in sorted(self.steps(), reverse=True):
            if latest is not None and step <= latest:
                break
            # Renamed but LATEST not yet updated: publish it if intact, else remove it.
            try:
                self.verify(step, full=True)
            except IndexCorrupt as e:
                log.warning("removing unpublished index %s: %s", self.step_dir(step), e)
                _remove_dir(self.step_dir(step), self.root)
                continue
            with atomic_write(os.path.join(self.root, LATEST)) as f:
                f.write(f"{step}\n")
            break
        self.prune()


def verify_all(root: str) -> list[tuple[str, float, str | None]]:
    """Every published step under ``root`` checked byte for byte: ``(directory, seconds, None
    or what is wrong)``, oldest first (``realm-jax index --verify``)."""
    store, results = IndexStore(root), []
    for step in store.steps():
        start = time.perf_counter()
        try:
            store.verify(step, full=True)
            problem = None
        except IndexCorrupt as e:
            problem = str(e)
        results.append((store.step_dir(step), time.perf_counter() - start, problem))
    return results


def load_searcher(kind: str, directory: str, block_emb: np.ndarray, options: dict) -> Searcher:
    """The saved searcher of ``kind`` ("exact" or "scann") over block_emb."""
    if kind == "exact":
        return ExactSearcher.load(directory, block_emb, **options)
    if kind == "scann":
        return ScannSearcher.load(directory, block_emb)
    raise IndexCorrupt(f"{directory}: unknown searcher kind {kind!r}")


def stored_bits(block_emb: np.ndarray) -> np.ndarray:
    """block_emb as the store keeps it on disk: bfloat16 as its uint16 bits, float32 as is."""
    return block_emb.view(np.uint16) if block_emb.dtype == BFLOAT16 else block_emb


def _write_npy(path: str, block_emb: np.ndarray, chunk_rows: int = 1 << 18) -> None:
    """block_emb [N, D] as an .npy (``stored_bits``) written in chunks, so a memory-mapped
    source streams through memory instead of becoming resident (13.35M x 128: 3.4-6.8 GB)."""
    stored = stored_bits(block_emb)
    with naming(path), open(path, "wb") as f:
        write_npy_header(f, stored.dtype, stored.shape)
        for start in range(0, len(stored), chunk_rows):
            write_array_bytes(f, stored[start : start + chunk_rows])
            release_pages(block_emb)


def _files(directory: str) -> list[str]:
    """Relative paths of every file under ``directory`` except meta.json, sorted."""
    out = []
    for parent, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(parent, name), directory)
            if rel != META:
                out.append(rel)
    return sorted(out)


SAMPLES, SAMPLE_BYTES = 16, 1 << 16


def _file_record(path: str) -> dict:
    return {"bytes": os.path.getsize(path), "sha256": _sha256(path),
            "sample_sha256": _sample_sha256(path)}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _sample_sha256(path: str) -> str:
    """SHA-256 of ``SAMPLES`` evenly spaced ``SAMPLE_BYTES`` pieces (first and last included)."""
    size = os.path.getsize(path)
    last = max(0, size - SAMPLE_BYTES)
    offsets = sorted({last * i // (SAMPLES - 1) for i in range(SAMPLES)})
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with naming(path):
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove_dir(path: str, root: str) -> None:
    """Renames ``path`` to a hidden ``.del`` name (gone for readers at once), then deletes it."""
    trash = os.path.join(root, f".{os.path.basename(path)}.del")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
