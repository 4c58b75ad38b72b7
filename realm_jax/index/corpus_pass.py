"""A whole-corpus embedding pass in shards: split across processes, resumable after a crash.

The corpus is cut into shards of ``shard_rows`` consecutive blocks. Shard ``k`` belongs to process
``k % process_count`` (``jax.process_index()``), which embeds it over its local devices
(``CorpusEmbedder``, length-sorted batches *within* the shard) and writes ``shard-<k>.npy``
atomically. When every shard is on disk, process 0 concatenates them, by plain file copies, into
one ``embeddings.npy`` (the index store's format: bfloat16 as its bits) and returns it
memory-mapped; no process ever holds the whole [N, D] array in memory.

Layout of ``workdir`` (one per pass, e.g. ``<index_root>/.embed-<step>``):
  spec.json          what the pass embeds: step tag, corpus fingerprint, shape, dtype, batching
  shard-<k>.npy      finished shards (a killed writer leaves only ``.shard-<k>.tmp``; one that
                     fails, e.g. on a full disk, removes it and raises an OSError naming it)
  embeddings.npy     the merged result

Resuming: a pass restarted on the same ``workdir`` with the same spec skips finished shards. Every
shard is embedded from its own blocks in a fixed batch order, so a resumed pass is bit-identical to
an uninterrupted one; a spec that differs (another step, corpus, dtype, batch or device layout)
starts over, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence

import jax
import numpy as np

from realm_jax.index.embed import BlockSource, CorpusEmbedder
from realm_jax.index.searcher import BFLOAT16, emb_dtype
from realm_jax.index.store import stored_bits
from realm_jax.utils.array_dir import write_array, write_npy_header
from realm_jax.utils.devices import sync
from realm_jax.utils.jsonl import atomic_write
from realm_jax.utils.progress import progress_bar
from realm_jax.utils.writes import naming

SHARD_ROWS = 1 << 16  # 65,536 blocks (13.35M blocks: 204 shards; bfloat16: 16 MB each)
SPEC, MERGED = "spec.json", "embeddings.npy"
PASS_PREFIX = ".embed-"  # <index_root>/.embed-<step>/: the pass of an index being built
log = logging.getLogger(__name__)


class ShardBlocks:
    """Blocks ``[start, stop)`` of a ``BlockSource`` as a ``BlockSource`` of their own."""

    def __init__(self, blocks: BlockSource, start: int, stop: int):
        self.blocks, self.start = blocks, start
        self.lengths = np.asarray(blocks.lengths[start:stop])

    def __len__(self) -> int:
        return len(self.lengths)

    def block_inputs(self, indices: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
        return self.blocks.block_inputs(np.asarray(indices) + self.start, max_len)


@dataclasses.dataclass(frozen=True)
class PassSpec:
    tag: str  # what embeds (e.g. "step 1500"): another tag is another pass
    corpus: str  # ``corpus_fingerprint``
    num_blocks: int
    dim: int
    dtype: str
    shard_rows: int
    batch_size: int
    max_len: int
    layout: str  # processes x local devices: batches, hence the bits, depend on it

    @property
    def num_shards(self) -> int:
        return -(-self.num_blocks // self.shard_rows)

    def rows(self, k: int) -> int:
        """Blocks in shard ``k`` (the last may be short)."""
        return min(self.num_blocks, (k + 1) * self.shard_rows) - k * self.shard_rows


def pass_dir(index_root: str, step: int) -> str:
    """Where the embedding pass of index ``step`` is written (hidden from ``IndexStore.steps``)."""
    return os.path.join(index_root, f"{PASS_PREFIX}{step}")


def passes(index_root: str) -> list[int]:
    """Steps with an embedding pass begun under ``index_root``, ascending."""
    if not os.path.isdir(index_root):
        return []
    tails = (n[len(PASS_PREFIX) :] for n in os.listdir(index_root) if n.startswith(PASS_PREFIX))
    return sorted(int(t) for t in tails if t.isdigit())


def clear_passes(index_root: str, upto: int) -> None:
    """Removes the passes of steps <= ``upto`` (published, or superseded by a newer index)."""
    for step in passes(index_root):
        if step <= upto:
            shutil.rmtree(pass_dir(index_root, step), ignore_errors=True)


def corpus_fingerprint(blocks: BlockSource, max_len: int, samples: int = 64) -> str:
    """sha256 of every block's length and of the tokens of ``samples`` evenly spaced blocks."""
    lengths = np.ascontiguousarray(blocks.lengths, np.int64)
    rows = np.unique(np.linspace(0, len(lengths) - 1, min(samples, len(lengths))).astype(np.int64))
    tokens = blocks.block_inputs(rows, max_len)["input_ids"].astype(np.int32)
    return hashlib.sha256(lengths.tobytes() + tokens.tobytes()).hexdigest()[:16]


def shard_path(workdir: str, k: int) -> str:
    return os.path.join(workdir, f"shard-{k:05d}.npy")


def embed_pass(
    embed: CorpusEmbedder, params: dict, blocks: BlockSource, workdir: str, tag: str, *,
    batch_size: int = 256, max_len: int = 288, dtype: np.dtype | str = "float32",
    shard_rows: int = SHARD_ROWS, progress: bool = True,
    on_shard: Callable[[int], None] | None = None, process: tuple[int, int] | None = None,
) -> np.ndarray | None:
    """Embeds every block into ``workdir`` (resuming what is there) -> [N, D] memory-mapped on
    process 0, None on the others. ``on_shard(k)`` is called after shard k is on disk.

    ``process``: (index, count) of this process among those sharing the pass; default the
    ``jax.distributed`` job's. ``(0, 1)`` runs alone (e.g. a refresher thread in one process
    of a multi-host trainer)."""
    me, n_proc = process or (jax.process_index(), jax.process_count())
    dtype = emb_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    spec = PassSpec(
        tag, corpus_fingerprint(blocks, max_len), len(blocks), embed.embedder.proj_size,
        "bfloat16" if dtype == BFLOAT16 else dtype.name, shard_rows,
        batch_size, max_len, f"{n_proc}x{len(embed.devices)}",
    )
    if me == 0:
        _prepare(workdir, spec)
    sync(f"embed_pass:prepare:{workdir}", n_proc)
    mine = [k for k in range(me, spec.num_shards, n_proc)]
    todo = [k for k in mine if not os.path.exists(shard_path(workdir, k))]
    total, done = sum(map(spec.rows, mine)), sum(map(spec.rows, set(mine) - set(todo)))
    if done:
        log.info("%s: resuming, %d of %d shards already embedded", workdir, len(mine) - len(todo),
                 len(mine))
    with progress_bar(total=total, desc="embed", unit="block", enabled=progress) as bar:
        bar.update(done)
        for k in todo:
            part = ShardBlocks(blocks, k * shard_rows, k * shard_rows + spec.rows(k))
            emb = embed(params, part, batch_size, max_len, dtype, progress=False,
                        on_batch=_Advance(bar))
            _save_atomic(shard_path(workdir, k), emb)
            if on_shard is not None:
                on_shard(k)
    sync(f"embed_pass:embedded:{workdir}", n_proc)
    merged = os.path.join(workdir, MERGED)
    if me == 0 and not os.path.exists(merged):
        _merge(workdir, spec, merged)
    sync(f"embed_pass:merged:{workdir}", n_proc)
    if me != 0:
        return None
    out = np.load(merged, mmap_mode="r")
    return out.view(BFLOAT16) if spec.dtype == "bfloat16" else out


class _Advance:
    """``on_batch`` for one shard: moves the pass's bar by the blocks done since the last call."""

    def __init__(self, bar):
        self.bar, self.seen = bar, 0

    def __call__(self, done: int) -> None:
        self.bar.update(done - self.seen)
        self.seen = done


def _prepare(workdir: str, spec: PassSpec) -> None:
    """Creates ``workdir`` for ``spec``; one holding another pass is cleared (with a warning)."""
    path = os.path.join(workdir, SPEC)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                if PassSpec(**json.load(f)) == spec:
                    return
        except (OSError, ValueError, TypeError):
            pass
        log.warning("%s: holds another embedding pass; starting over", workdir)
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(dataclasses.asdict(spec), f, indent=1)


def _save_atomic(path: str, emb: np.ndarray) -> None:
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name[:-4]}.tmp")
    try:
        write_array(tmp, stored_bits(emb))  # fsynced
        os.replace(tmp, path)
    except BaseException:  # a full disk, an I/O error: no half shard is left
        _remove(tmp)
        raise


def _merge(workdir: str, spec: PassSpec, merged: str) -> None:
    """Concatenates the shards into one .npy by file copies (nothing mapped or held whole)."""
    stored = np.dtype(np.uint16) if spec.dtype == "bfloat16" else np.dtype(spec.dtype)
    tmp = os.path.join(workdir, f".{MERGED}.tmp")
    try:
        with naming(tmp), open(tmp, "wb") as out:
            write_npy_header(out, stored, (spec.num_blocks, spec.dim))
            for k in range(spec.num_shards):
                path = shard_path(workdir, k)
                part = np.load(path, mmap_mode="r")
                want = (spec.rows(k), spec.dim)
                if part.shape != want or part.dtype != stored:
                    raise ValueError(
                        f"{path}: {part.dtype}{list(part.shape)}, expected {stored}{list(want)}"
                    )
                offset = part.offset
                del part
                with open(path, "rb") as f:
                    f.seek(offset)
                    shutil.copyfileobj(f, out, 1 << 22)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, merged)
    except BaseException:  # the shards stay: a resumed pass merges again
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
