"""The searcher interface shared by exact and ScaNN MIPS, a numpy reference and recall@k.

A searcher answers ``search(query_emb [Q, D], k) -> (scores [Q, k] float32, ids [Q, k] int32)``,
best first, by inner product against the block embeddings ``block_emb [N, D]`` it was built on.
"""

from __future__ import annotations

import mmap
from typing import Protocol, runtime_checkable

import ml_dtypes
import numpy as np

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
EMB_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": BFLOAT16}


@runtime_checkable
class Searcher(Protocol):
    """Top-k maximum inner product search over a fixed set of block embeddings."""

    kind: str  # "exact" or "scann": the name the index store saves it under
    num_blocks: int
    dim: int

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """query_emb [Q, D] -> (scores [Q, k] float32, ids [Q, k] int32), best first."""
        ...

    def save(self, directory: str, shared_dataset: str | None = None) -> None:
        """Writes the searcher's own files into ``directory``; ``shared_dataset`` is a path,
        relative to it, of an .npy of the same embeddings the searcher may read instead."""
        ...


def release_pages(block_emb: np.ndarray) -> None:
    """Drops a memory-mapped array's pages from this process's resident set (the kernel keeps them
    in its page cache; the next read maps them back). A no-op for arrays in memory.

    Streaming 13M rows through ScaNN would otherwise leave the whole 3.4 GB file resident beside
    ScaNN's own copy."""
    mapped = getattr(block_emb, "_mmap", None)  # np.memmap and its views keep their mmap here
    if isinstance(mapped, mmap.mmap) and not mapped.closed:
        mapped.madvise(mmap.MADV_DONTNEED)


def emb_dtype(name: str) -> np.dtype:
    """'float32' or 'bfloat16' -> the numpy dtype block embeddings are stored in."""
    if name not in EMB_DTYPES:
        raise ValueError(f"embedding dtype {name!r}: expected one of {sorted(EMB_DTYPES)}")
    return EMB_DTYPES[name]


def check_query(query_emb: np.ndarray, dim: int, k: int, num_blocks: int) -> np.ndarray:
    """The query as float32 [Q, D], or a one-line ValueError on a bad shape or k."""
    q = np.asarray(query_emb, np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"query_emb has shape {q.shape}; expected [num_queries, {dim}]")
    if not 1 <= k <= num_blocks:
        raise ValueError(f"k={k}: expected 1 <= k <= num_blocks={num_blocks}")
    return q


def numpy_top_k(
    query_emb: np.ndarray, block_emb: np.ndarray, k: int, chunk_rows: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product in numpy (the reference): -> scores [Q, k], ids [Q, k].

    Blocks are scanned in chunks so the score matrix stays [Q, chunk_rows]; ties go to the lower
    id, as in ``jax.lax.top_k``.
    """
    q = check_query(query_emb, block_emb.shape[1], k, len(block_emb))
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(block_emb), chunk_rows):
        chunk = np.asarray(block_emb[start : start + chunk_rows], np.float32)
        release_pages(block_emb)  # a memory-mapped corpus streams through, not into, memory
        s = q @ chunk.T  # [Q, chunk]
        kk = min(k, s.shape[1])
        top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        # argpartition keeps any of the rows tied at the k-th score: rows with such a tie are
        # sorted stably instead (rare on float embeddings), so the lower ids are kept.
        kth = np.take_along_axis(s, top, 1).min(1)
        tied = (s >= kth[:, None]).sum(1) > kk
        if tied.any():
            top[tied] = np.argsort(-s[tied], axis=1, kind="stable")[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        best_i = np.concatenate([best_i, top + start], 1)
        # Sort by (-score, id) so ties resolve to the lower id; keep the best k.
        order = np.lexsort((best_i, -best_s), axis=1)[:, :k]
        best_s = np.take_along_axis(best_s, order, 1)
        best_i = np.take_along_axis(best_i, order, 1)
    return best_s, best_i.astype(np.int32)


def recall_at_k(found_ids: np.ndarray, true_ids: np.ndarray) -> float:
    """Mean fraction of the true top-k ids [Q, k] present in the found ids [Q, k']."""
    if found_ids.shape[0] != true_ids.shape[0]:
        raise ValueError(f"{found_ids.shape[0]} found rows vs {true_ids.shape[0]} true rows")
    hits = [len(np.intersect1d(f, t)) / t.size for f, t in zip(found_ids, true_ids, strict=True)]
    return float(np.mean(hits))


def tied_recall(found_scores: np.ndarray, true_scores: np.ndarray, rtol: float = 1e-5) -> float:
    """Recall@k from exact scores [Q, k]: a found block scoring at least the k-th true score (up
    to float rounding) is a hit, so ties between equal embeddings are not misses."""
    kth = true_scores[:, -1:]
    hits = found_scores >= kth - rtol * np.maximum(np.abs(kth), 1.0)
    return float(np.mean(np.minimum(hits.sum(1), true_scores.shape[1]) / true_scores.shape[1]))


def rescore(
    query_emb: np.ndarray, block_emb: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products of candidate ids [Q, c] (-1 = none), re-sorted -> best k of each row."""
    missing = ids < 0
    any_missing = bool(missing.any())
    rows = np.where(missing, 0, ids) if any_missing else ids
    cand = block_emb[rows.ravel()].reshape(*ids.shape, -1)  # [Q, c, D]
    if cand.dtype != np.float32:
        cand = cand.astype(np.float32)
    scores = np.matmul(cand, np.asarray(query_emb, np.float32)[:, :, None])[..., 0]  # [Q, c]
    if any_missing:
        scores[missing] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1).astype(np.int32)
