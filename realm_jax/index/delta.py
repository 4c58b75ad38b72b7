"""An index updated in place of a rebuild: the main searcher, plus rows added since, minus dead.

A corpus edit embeds only the blocks it adds; they are searched exactly (numpy) beside the main
searcher, whose rows never change, and removed blocks are filtered out of both. The main searcher
is asked for ``k`` plus the number of dead rows it holds, so ``k`` live results always survive the
filter: the answer equals exact search over the live rows whenever the main searcher is exact.
``realm-jax index`` folds everything back into one main searcher.
"""

from __future__ import annotations

import numpy as np

from realm_jax.index.searcher import Searcher, check_query, numpy_top_k


class StackedRows:
    """``main [R, D]`` then ``extra [M, D]`` as one read-only array of rows (gathers only)."""

    def __init__(self, main: np.ndarray, extra: np.ndarray):
        self.main, self.extra = main, extra
        self.shape = (len(main) + len(extra), main.shape[1])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        out = np.empty((*ids.shape, self.shape[1]), np.float32)
        in_main = ids < len(self.main)
        out[in_main] = np.asarray(self.main[ids[in_main]], np.float32)
        out[~in_main] = np.asarray(self.extra[ids[~in_main] - len(self.main)], np.float32)
        return out


class DeltaSearcher:
    """``main`` over rows ``[0, R)``, exact search over ``extra [M, D]`` as rows ``[R, R + M)``,
    never returning a row of ``dead`` (bool ``[R + M]``)."""

    kind = "delta"

    def __init__(self, main: Searcher, extra: np.ndarray, dead: np.ndarray):
        self.main, self.extra = main, np.asarray(extra, np.float32)
        self.dim = main.dim
        self.num_blocks = main.num_blocks + len(self.extra)
        if self.extra.ndim != 2 or (len(self.extra) and self.extra.shape[1] != self.dim):
            raise ValueError(f"extra rows {self.extra.shape} do not match dim {self.dim}")
        if dead.shape != (self.num_blocks,):
            raise ValueError(f"dead mask {dead.shape} != ({self.num_blocks},)")
        self.dead = dead
        self.main_dead = int(dead[: main.num_blocks].sum())
        self.extra_dead = int(dead[main.num_blocks :].sum())

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = check_query(query_emb, self.dim, k, self.num_blocks)
        parts = []
        k_main = min(self.main.num_blocks, k + self.main_dead)
        if k_main:
            parts.append(self.main.search(q, k_main))
        if len(self.extra):
            k_extra = min(len(self.extra), k + self.extra_dead)
            scores, ids = numpy_top_k(q, self.extra, k_extra)
            parts.append((scores, ids + self.main.num_blocks))
        scores = np.concatenate([p[0] for p in parts], 1).astype(np.float32)
        ids = np.concatenate([p[1] for p in parts], 1).astype(np.int64)
        valid = ids >= 0
        valid[valid] = ~self.dead[ids[valid]]
        scores = np.where(valid, scores, -np.inf)
        order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        ids = np.where(np.isfinite(scores), ids, -1)
        if ids.shape[1] < k:  # fewer live rows than k
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, ids.astype(np.int32)

    def save(self, directory: str, shared_dataset: str | None = None) -> None:
        raise NotImplementedError("a DeltaSearcher is rebuilt from its parts, never saved")
