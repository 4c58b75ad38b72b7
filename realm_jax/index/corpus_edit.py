"""Changing what an open-QA run knows by changing its corpus: add, replace, delete, re-index.

A trained run answers from its block store and frozen index. An edit never retrains and never
rebuilds: the blocks of added or replaced documents are packed and embedded by the document tower
that embedded the index (saved beside it), the blocks they supersede are marked dead, and the
result is published as a new *corpus version* under ``<workdir>/serving/corpus/``:

  <v>/meta.json      which main index (dir, step, rows) and which delta block stores, in row order;
                     ``docs``: document id -> its live block rows, for every document edits touched
  <v>/dead.npy       int64 ids of dead blocks
  <v>/extra_emb.npy  float32 [M, D] embeddings of the rows after the main index's
  <v>/blocks/        a block store of the blocks this version added (when it added any)
  LATEST             the newest version: publishing *is* replacing this file

Writers (edits, ``reindex``) hold the workdir lock (``run/lock.py``) while they make the next
version from the newest one (an edit checks its ids before, without it, so that a rejected edit
writes nothing), and publish as ``index/versions.py`` says: write ``<v>.tmp/``, fsync, rename it
to ``<v>/``, replace LATEST atomically. Readers take no lock and see the old version or the new
one, never half of one; what a killed writer left is removed by the next one.
``reindex`` re-embeds every row with the run's current embedder into ``<workdir>/serving/index/``
and publishes a version with no extra rows.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.data import input_pipeline as ip
from realm_jax.data.blocks import BlockStore, build_blocks
from realm_jax.data.corpus_view import CorpusView, open_view
from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import ConfigError, JsonlError
from realm_jax.index.delta import DeltaSearcher, StackedRows
from realm_jax.index.live import embed_blocks
from realm_jax.index.refresher import build_searcher
from realm_jax.index.store import IndexStore
from realm_jax.index.towers import load_tower, prune_towers, save_tower
from realm_jax.index.versions import (
    SERVING_INDEX,
    discard,
    drop_unnamed_steps,
    latest_version,
    next_version,
    publish,
    recover_versions,
    version_root,
)
from realm_jax.models.realm import EmbedderSpec, embedder_params
from realm_jax.run.files import INDEX_DIR
from realm_jax.run.lock import EDIT_LOCK_TIMEOUT, workdir_lock
from realm_jax.run.model_setup import realm_config
from realm_jax.utils.array_dir import write_array
from realm_jax.utils.jsonl import iter_jsonl, read_json
from realm_jax.utils.paths import missing_file_reason

OPS = ("add", "replace", "delete")


@dataclasses.dataclass
class Serving:
    """What answering reads: the corpus view, its searcher and rows, and the query tower spec."""

    view: CorpusView
    dead: np.ndarray  # int64 ids of the dead blocks, as the version stores them
    searcher: DeltaSearcher
    block_emb: StackedRows
    version: int
    meta: dict


def _current(workdir: str, config: ConfigDict) -> tuple[dict, np.ndarray, np.ndarray, CorpusView]:
    """(meta, dead ids, extra embeddings or None, corpus view) of the newest version. Version 0
    is implicit: the run's own index step 0 over its block store, nothing edited."""
    v = latest_version(workdir)
    if v is None:
        meta = {"version": 0, "index": {"dir": INDEX_DIR, "step": 0, "rows": None},
                "deltas": [], "docs": {}}
        dead, extra = np.zeros(0, np.int64), None
    else:
        d = os.path.join(version_root(workdir), str(v))
        meta = read_json(os.path.join(d, "meta.json"))
        dead, extra = (
            np.load(os.path.join(d, "dead.npy")),
            np.load(os.path.join(d, "extra_emb.npy")),
        )
    deltas = [os.path.join(version_root(workdir), str(v), "blocks") for v in meta["deltas"]]
    view = open_view(config.data.blocks_dir, deltas, dead)
    if meta["index"]["rows"] is None:
        meta["index"]["rows"] = len(view.base)
    return meta, dead, extra, view


def load_serving(workdir: str, config: ConfigDict) -> Serving:
    """The corpus view and searcher of the newest version, checked against each other."""
    meta, dead, extra, view = _current(workdir, config)
    index_dir = os.path.join(workdir, meta["index"]["dir"])
    loaded = IndexStore(index_dir).load(meta["index"]["step"])
    if loaded is None or loaded.step != meta["index"]["step"]:
        raise FileNotFoundError(f"{index_dir}/{meta['index']['step']}: index missing or damaged")
    rows = len(loaded.block_emb)
    extra = np.zeros((0, loaded.block_emb.shape[1]), np.float32) if extra is None else extra
    if rows != meta["index"]["rows"] or rows + len(extra) != len(view):
        raise ConfigError(
            f"{index_dir}/{loaded.step}: the index has {rows + len(extra)} rows but the corpus "
            f"has {len(view)} blocks; rebuild it with `realm-jax index --workdir {workdir}`"
        )
    searcher = DeltaSearcher(loaded.searcher, extra, view.dead)
    stacked = StackedRows(loaded.block_emb, extra)
    return Serving(view, dead, searcher, stacked, meta["version"], meta)


# ---------------------------------------------------------------------------------------------
# Edits.


def read_edit_file(path: str, op: str) -> list[dict]:
    """The records of an edit file, checked (see ``check_records``)."""
    if op not in OPS:
        raise ConfigError(f"corpus operation {op!r}: expected one of {', '.join(OPS)}")
    if reason := missing_file_reason(path):
        raise FileNotFoundError(f"{path}: {reason}")
    fields = ("id",) if op == "delete" else ("id", "title", "text")
    return check_records([dict(r, line=line) for line, r in iter_jsonl(path, fields)], op, path)


def check_records(records: list[dict], op: str, source: str) -> list[dict]:
    """``{id, title, text}`` records (``{id}`` for delete), each with its ``line``, checked: one
    error line names the source and line of a missing field, a wrong type, an empty text (one
    with no wordpieces, e.g. only zero-width or control characters, too: a replace by it would
    only retire the old blocks) or a repeated id. Returns them with ids as strings (ids compare
    as the corpus's, textually)."""
    fields = ("id",) if op == "delete" else ("id", "title", "text")
    out, first_line = [], {}
    for r in records:
        line = r["line"]
        missing = [f for f in fields if f not in r]
        if missing:
            raise JsonlError(source, line, f"missing field {missing[0]!r}")
        if not isinstance(r["id"], (int, str)) or isinstance(r["id"], bool):
            raise JsonlError(source, line, "field 'id' must be an integer or a string")
        for name in fields[1:]:
            if not isinstance(r[name], str):
                raise JsonlError(source, line, f"field {name!r} must be a string")
        if op != "delete" and not r["text"].strip():
            raise JsonlError(source, line, "field 'text' is empty")
        key = str(r["id"])
        if key in first_line:
            raise JsonlError(source, line, f"duplicate id {key} (first on line {first_line[key]})")
        first_line[key] = line
        out.append({"id": key, **{n: r[n] for n in fields[1:]}, "line": line})
    if not out:
        raise JsonlError(source, 1, "no documents")
    if op != "delete":
        pieces = shared_tokenizer().tokenize([r["text"] for r in out])
        for r, ids in zip(out, pieces, strict=True):
            if not ids:
                raise JsonlError(source, r["line"], "field 'text' has no words (only spaces, "
                                 "control or zero-width characters)")
    return out


def _base_docs(config: ConfigDict, base: BlockStore) -> dict[str, list[int]]:
    """Document id -> block rows of the run's own store (ids as the corpus gives them: a jsonl's
    ``id`` fields; for blocks.tfr and block_records.npy, the record number, read from the store)."""
    positions = np.asarray(base.arrays["doc_index"])
    d = config.data
    if d.titles or d.corpus.endswith(".npy"):
        ids = [str(i) for i in range(int(positions.max()) + 1)]
    else:
        ids = [str(i) for i, _, _ in ip.corpus_documents(d)]
    out: dict[str, list[int]] = {}
    for row, pos in enumerate(positions):
        out.setdefault(ids[int(pos)], []).append(row)
    return out


def _live_docs(config, base, meta) -> dict[str, list[int]]:
    docs = _base_docs(config, base)
    docs.update(meta["docs"])
    return {k: v for k, v in docs.items() if v}


def _tower(workdir: str, meta: dict) -> dict:
    index_dir = os.path.join(workdir, meta["index"]["dir"])
    tower = load_tower(index_dir, meta["index"]["step"])
    if tower is None:
        raise ConfigError(
            f"{index_dir}: no document tower saved beside index {meta['index']['step']}, so new "
            f"blocks cannot be embedded like the rest; run `realm-jax index --workdir {workdir}`"
        )
    return tower


def apply_edit(
    workdir: str, config: ConfigDict, op: str, records: list[dict], source: str, tokenizer,
    progress: bool = False, lock_timeout: float = EDIT_LOCK_TIMEOUT,
) -> dict:
    """Applies ``op`` with ``records`` (see ``read_edit_file``) as a new version; its summary.

    The records are checked against the newest version first (a rejected edit writes nothing),
    then the edit runs under the workdir lock (waiting up to ``lock_timeout`` s for another
    writer), checked again if another writer published a version meanwhile."""
    start = time.perf_counter()
    serving = load_serving(workdir, config)  # checks index and corpus agree before any change
    live = _check_ids(config, serving, op, records, source)
    with workdir_lock(workdir, lock_timeout, f"corpus {op}"):
        recover_versions(workdir)
        if (latest_version(workdir) or 0) != serving.version:
            serving = load_serving(workdir, config)
            live = _check_ids(config, serving, op, records, source)
        info = _apply_edit(workdir, config, op, records, source, tokenizer, progress, serving,
                           live)
    return dict(info, seconds=round(time.perf_counter() - start, 3))


def _check_ids(config, serving: Serving, op, records, source) -> dict[str, list[int]]:
    """The live documents of ``serving``; an error if an added id is one or an edited one not."""
    live = _live_docs(config, serving.view.base, serving.meta)
    for r in records:
        exists = r["id"] in live
        if op == "add" and exists:
            raise JsonlError(source, r["line"], f"id {r['id']} is already in the corpus "
                             "(use `corpus replace`)")
        if op != "add" and not exists:
            raise JsonlError(source, r["line"], f"id {r['id']} is not in the corpus")
    return live


def _apply_edit(workdir, config, op, records, source, tokenizer, progress, serving, live):
    meta, dead, base = serving.meta, serving.dead, serving.view.base
    removed = [row for r in records if op != "add" for row in live[r["id"]]]
    docs = dict(meta["docs"], **{r["id"]: [] for r in records if op != "add"})
    version, tmp = next_version(workdir)
    try:
        new_emb = np.zeros((0, serving.searcher.dim), np.float32)
        embed_seconds = 0.0
        deltas = list(meta["deltas"])
        if op != "delete":
            pairs = [(r["title"], r["text"]) for r in records]
            build_blocks(pairs, os.path.join(tmp, "blocks"), tokenizer, max_len=base.max_len,
                         source=source, progress=progress)
            added = BlockStore(os.path.join(tmp, "blocks"))
            first_row = len(serving.view)
            for row, pos in enumerate(np.asarray(added.arrays["doc_index"])):
                docs.setdefault(records[int(pos)]["id"], []).append(first_row + row)
            t = time.perf_counter()
            spec = EmbedderSpec.from_realm_config(realm_config(config.model))
            new_emb = embed_blocks(spec, _tower(workdir, meta), added, config.index,
                                   base.max_len, progress).astype(np.float32)
            embed_seconds = time.perf_counter() - t
            deltas.append(version)
        old_extra = serving.block_emb.extra
        meta = dict(meta, version=version, deltas=deltas, docs=docs, op=op, source=source)
        write_array(os.path.join(tmp, "extra_emb.npy"), np.concatenate([old_extra, new_emb]))
        write_array(os.path.join(tmp, "dead.npy"), np.concatenate([dead, removed]).astype(np.int64))
        publish(workdir, version, tmp, meta)
    except BaseException:
        discard(tmp)
        raise
    return {
        "version": version, "op": op, "documents": len(records), "blocks_added": len(new_emb),
        "blocks_removed": len(removed), "embedded_blocks": len(new_emb),
        "live_blocks": serving.view.num_live - len(removed) + len(new_emb),
        "embed_seconds": round(embed_seconds, 3),
    }


def reindex(
    workdir: str, config: ConfigDict, params: dict, progress: bool = True,
    lock_timeout: float = EDIT_LOCK_TIMEOUT,
) -> dict:
    """Re-embeds every row with the run's current document tower into ``serving/index``, under
    the workdir lock (waiting up to ``lock_timeout`` s for another writer)."""
    with workdir_lock(workdir, lock_timeout, "index"):
        recover_versions(workdir)
        return _reindex(workdir, config, params, progress)


def _reindex(workdir: str, config: ConfigDict, params: dict, progress: bool) -> dict:
    start = time.perf_counter()
    meta, dead, _, view = _current(workdir, config)
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    tower = jax.device_get(embedder_params(params))
    emb = embed_blocks(spec, tower, view, config.index, view.max_len, progress)
    store = IndexStore(os.path.join(workdir, SERVING_INDEX), keep=config.index.keep)
    drop_unnamed_steps(store, meta)
    step = (store.latest_step() or 0) + 1
    save_tower(store.root, step, tower)
    store.publish(step, emb, build_searcher(config.index.searcher, emb))
    version, tmp = next_version(workdir)
    try:
        index = {"dir": SERVING_INDEX, "step": step, "rows": len(emb)}
        write_array(os.path.join(tmp, "extra_emb.npy"), np.zeros((0, emb.shape[1]), np.float32))
        write_array(os.path.join(tmp, "dead.npy"), np.asarray(dead, np.int64))
        publish(workdir, version, tmp, dict(meta, version=version, index=index, op="index"))
    except BaseException:
        discard(tmp)
        raise
    prune_towers(store)
    seconds = round(time.perf_counter() - start, 3)
    return {"version": version, "index_step": step, "embedded_blocks": len(emb),
            "live_blocks": view.num_live, "seconds": seconds}
