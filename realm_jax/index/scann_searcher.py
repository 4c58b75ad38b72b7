"""Approximate MIPS with ScaNN (numpy API): tree + asymmetric hashing + exact reordering.

Parameters scale with the corpus (``scann_params``): about sqrt(N) tree leaves, a fixed fraction
of them searched, anisotropic AH with 2 dimensions per 4-bit block, then the best ``reorder``
candidates rescored inside ScaNN against its copy of the rows in the stored dtype (float32, or
bfloat16 for bfloat16 storage). Below ``BRUTE_FORCE_BELOW`` blocks the tree would be a handful of
tiny leaves, so ScaNN's own float32 brute force is used instead (exact, and still the same
searcher files).

Building at 13M blocks: ScaNN's numpy builder copies whatever float32 array it is given, so
handing it all rows means two float32 copies (2 x 6.8 GB at 13.35M x 128). Instead the tree and
the AH codebook are trained on a seeded random sample of rows (the sample ScaNN would draw
anyway), and then every row is streamed in with ``upsert`` in chunks of ``UPSERT_ROWS``: row i
lands at ScaNN's datapoint i (the sample's slots are overwritten in place by rows 0..S-1), so ids
need no mapping. Memory is then ScaNN's own compact copies (AH codes, and the reorder rows in the
stored dtype) plus one float32 chunk.

Exact rescoring: ScaNN's reorder (or brute force) accumulates inner products in float32 over the
stored rows (bfloat16 rows upcast), so its scores are exact inner products of what the index store
holds (to float32 summation order, ~1e-6 relative) and are returned as they are. A configuration
without that reorder (``reorder=0``) gets AH estimates, so the ids are rescored here against the
stored rows instead. Rescoring here when ScaNN already has costs ~1 us a query in cache misses
(measured at 1M blocks: 4% of ScaNN's own time), for the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import numpy as np

from realm_jax.index.searcher import (
    BFLOAT16,
    check_query,
    numpy_top_k,
    release_pages,
    rescore,
    tied_recall,
)
from realm_jax.utils.progress import progress_bar

UPSERT_ROWS = 1 << 17  # rows converted to float32 and handed to ScaNN at a time (64 MB)
UPSERT_BATCH = 1024
BRUTE_FORCE_BELOW = 8192  # 8192 x 128 float32 scores in ~1 ms per query: nothing to approximate
LEAVES_SEARCHED = 0.05  # fraction of leaves a query visits (1M blocks: 50 of 1000)
PARAMS_FILE = "scann_params.json"
_DATASET_ASSETS = ("dataset.npy", "bfloat16_dataset.npy")  # float32 / bfloat16 reorder rows


def import_scann():
    """``scann`` without its TensorFlow ops (the numpy API needs none; loading TF takes ~7 s)."""
    if "scann" in sys.modules or "tensorflow" in sys.modules:
        import scann

        return scann
    sys.modules["tensorflow"] = None  # makes scann's `import tensorflow` fail, so it skips TF
    try:
        import scann
    finally:
        del sys.modules["tensorflow"]
    return scann


@dataclasses.dataclass(frozen=True)
class ScannParams:
    """A ScaNN configuration; ``num_leaves == 0`` means float32 brute force."""

    num_leaves: int
    leaves_to_search: int
    training_sample_size: int
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    reorder: int = 100
    reorder_dtype: str = "float32"  # ScaNN's copy of the rows for reordering: the stored dtype

    @property
    def brute_force(self) -> bool:
        return self.num_leaves == 0


def scann_params(
    num_blocks: int, leaves_searched: float = LEAVES_SEARCHED, reorder_dtype: str = "float32"
) -> ScannParams:
    """ScaNN parameters for a corpus of ``num_blocks``: ~sqrt(N) leaves, 5% of them searched."""
    if num_blocks < BRUTE_FORCE_BELOW:
        return ScannParams(num_leaves=0, leaves_to_search=0, training_sample_size=0, reorder=0)
    leaves = round(math.sqrt(num_blocks))
    return ScannParams(
        num_leaves=leaves,
        leaves_to_search=min(leaves, max(10, math.ceil(leaves * leaves_searched))),
        # k-means on ~100 points a leaf is plenty and keeps the build fast at 13M blocks.
        training_sample_size=min(num_blocks, max(50_000, 100 * leaves)),
        reorder_dtype=reorder_dtype,
    )


class ScannSearcher:
    """ScaNN candidates, rescored exactly against the stored block embeddings."""

    kind = "scann"

    def __init__(self, scann_searcher, block_emb: np.ndarray, params: ScannParams):
        self.scann = scann_searcher  # the raw scann_ops_pybind.ScannSearcher
        self.block_emb = block_emb  # [N, D] float32 or bfloat16, possibly memory-mapped
        self.num_blocks, self.dim = block_emb.shape
        self.params = params
        self.recall: dict[str, float] = {}  # e.g. {"recall_at_10": 0.99, "num_queries": 256}

    @classmethod
    def build(
        cls,
        block_emb: np.ndarray,
        params: ScannParams | None = None,
        recall_k: int = 10,
        recall_queries: np.ndarray | None = None,
        num_recall_queries: int = 256,
        seed: int = 0,
    ) -> ScannSearcher:
        """Builds over block_emb [N, D] and measures recall@recall_k against exact search.

        Without ``recall_queries`` a seeded sample of the blocks themselves serves as queries, each
        leaving itself out (the refresher has no questions at build time; on clustered data this
        tracks the recall of fresh queries from the same distribution within ~0.01).
        """
        if block_emb.ndim != 2 or len(block_emb) == 0:
            raise ValueError(f"block_emb has shape {block_emb.shape}; expected [N > 0, D]")
        stored = "bfloat16" if block_emb.dtype == BFLOAT16 else "float32"
        params = params or scann_params(len(block_emb), reorder_dtype=stored)
        searcher = cls(_build_scann(block_emb, params, recall_k, seed), block_emb, params)
        k = min(recall_k, len(block_emb) - 1)
        if recall_queries is not None:
            searcher.measure_recall(recall_queries, k)
        elif k >= 1:
            rng = np.random.default_rng(seed)
            rows = np.sort(
                rng.choice(len(block_emb), min(num_recall_queries, len(block_emb)), False)
            )
            searcher.measure_recall(np.asarray(block_emb[rows], np.float32), k, exclude=rows)
        release_pages(block_emb)  # the recall reference scanned every row
        return searcher

    def measure_recall(
        self, query_emb: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> float:
        """Recall@k of ``search`` against numpy exact search on query_emb [Q, D] (ties count as
        hits); recorded in ``self.recall``.

        ``exclude`` [Q]: a block id to leave out of each query's truth and results (a block used as
        its own query would be a free hit).
        """
        extra = 0 if exclude is None else 1
        true = numpy_top_k(query_emb, self.block_emb, k + extra)  # (scores, ids) [Q, k + extra]
        found = self.search(query_emb, k + extra)
        if exclude is not None:
            keep = lambda s, i, e: (s[i != e][:k], i[i != e][:k])
            drop = lambda a: tuple(map(np.stack, zip(*map(keep, *a, exclude), strict=True)))
            true, found = drop(true), drop(found)
        recall = tied_recall(found[0], true[0])
        self.recall = {f"recall_at_{k}": recall, "num_queries": len(query_emb)}
        return recall

    def search(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """query_emb [Q, D] -> (scores [Q, k] float32, ids [Q, k] int32), best first."""
        q = check_query(query_emb, self.dim, k, self.num_blocks)
        ids, scores = self.scann.search_batched_parallel(q, **self.search_kwargs(k))  # uint32
        ids = ids.astype(np.int32)
        if ids.shape[1] < k:  # ScaNN found fewer than k candidates in the leaves it searched
            pad = ((0, 0), (0, k - ids.shape[1]))
            ids = np.pad(ids, pad, constant_values=-1)
            scores = np.pad(scores, pad, constant_values=-np.inf)
        if self.exact_scores:
            return np.asarray(scores, np.float32), ids
        return rescore(q, self.block_emb, ids, k)

    @property
    def exact_scores(self) -> bool:
        """Whether ScaNN's returned scores are float32 inner products (brute force or reorder)."""
        return self.params.brute_force or self.params.reorder > 0

    def search_kwargs(self, k: int) -> dict[str, int]:
        """The per-query arguments of ScaNN's ``search_batched*`` for top-k."""
        if self.params.brute_force:
            return {"final_num_neighbors": k}
        kwargs = {"final_num_neighbors": k, "leaves_to_search": self.params.leaves_to_search}
        if self.params.reorder > 0:
            kwargs["pre_reorder_num_neighbors"] = max(self.params.reorder, k)
        return kwargs

    def save(self, directory: str, shared_dataset: str | None = None) -> None:
        """ScaNN's assets and our parameters into ``directory``.

        ``shared_dataset``: an .npy path relative to ``directory`` holding the same rows as
        ScaNN's own copy (the index store's embeddings, float32 or bfloat16 bits); ScaNN then reads
        it instead of a second copy (13.35M x 128 is 6.8 GB in float32, 3.4 GB in bfloat16).
        """
        os.makedirs(directory, exist_ok=True)
        self.scann.serialize(directory, relative_path=True)
        if shared_dataset is not None:
            _share_dataset(directory, shared_dataset)
        record = {"params": dataclasses.asdict(self.params), "recall": self.recall}
        with open(os.path.join(directory, PARAMS_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)

    @classmethod
    def load(cls, directory: str, block_emb: np.ndarray) -> ScannSearcher:
        """The searcher saved in ``directory``, rescoring against block_emb [N, D]."""
        scann = import_scann()
        with open(os.path.join(directory, PARAMS_FILE), encoding="utf-8") as f:
            record = json.load(f)
        searcher = cls(
            scann.scann_ops_pybind.load_searcher(directory),
            block_emb,
            ScannParams(**record["params"]),
        )
        searcher.recall = record["recall"]
        return searcher


def _build_scann(block_emb: np.ndarray, params: ScannParams, k: int, seed: int):
    """The raw ScaNN searcher over block_emb [N, D], trained on a sample and streamed in by
    chunks (module docstring); small corpora (the sample is every row) are built directly."""
    scann = import_scann()
    from scann.scann_ops.py.scann_builder import ReorderType

    n = len(block_emb)
    sample_size = n if params.brute_force else min(n, params.training_sample_size)
    if sample_size == n:
        sample = np.arange(n)
    else:
        sample = np.sort(np.random.default_rng(seed).choice(n, sample_size, replace=False))
    builder = scann.scann_ops_pybind.builder(_float32(block_emb, sample), k, "dot_product")
    if params.brute_force:
        builder = builder.score_brute_force()
    else:
        builder = builder.tree(
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.leaves_to_search,
            training_sample_size=sample_size,
        ).score_ah(
            params.dims_per_block,
            anisotropic_quantization_threshold=params.anisotropic_threshold,
        )
        if params.reorder > 0:
            quantize = {"float32": ReorderType.FLOAT32, "bfloat16": ReorderType.BFLOAT16}
            builder = builder.reorder(params.reorder, quantize=quantize[params.reorder_dtype])
    searcher = builder.build()
    if sample_size == n:
        return searcher
    searcher.reserve(n)
    with progress_bar(total=n, desc="scann", unit="row") as bar:
        for start in range(0, n, UPSERT_ROWS):
            stop = min(n, start + UPSERT_ROWS)
            # Datapoint i < sample_size holds a sample row: overwrite it with row i; append others.
            slots = [i if i < sample_size else None for i in range(start, stop)]
            searcher.searcher.upsert(slots, _float32(block_emb, slice(start, stop)), UPSERT_BATCH)
            release_pages(block_emb)
            bar.update(stop - start)
    if searcher.size() != n:
        raise RuntimeError(f"ScaNN holds {searcher.size()} datapoints after streaming {n} rows")
    return searcher


def _float32(block_emb: np.ndarray, rows) -> np.ndarray:
    return np.ascontiguousarray(block_emb[rows], np.float32)


def _share_dataset(directory: str, shared: str) -> None:
    """Points ScaNN's reorder-rows asset at ``shared`` after checking it holds the same rows.

    ScaNN keeps float32 rows as ``dataset.npy`` and bfloat16 rows as int16 bits in
    ``bfloat16_dataset.npy``; our store keeps bfloat16 as uint16 bits, which ScaNN reads alike.
    A configuration whose copy differs in kind (float32 brute force over bfloat16 rows) keeps its
    own.
    """
    assets_path = os.path.join(directory, "scann_assets.pbtxt")
    with open(assets_path, encoding="utf-8") as f:
        assets = f.read()
    name = next((a for a in _DATASET_ASSETS if f'asset_path: "{a}"' in assets), None)
    own_path = os.path.join(directory, name or "")
    if name is None or not os.path.isfile(own_path):
        return  # this configuration keeps no copy of the rows
    own = np.load(own_path, mmap_mode="r")
    other = np.load(os.path.join(directory, shared), mmap_mode="r")
    if own.shape != other.shape or own.dtype.itemsize != other.dtype.itemsize:
        return
    bits = np.float32 if own.dtype.itemsize == 4 else np.uint16
    rows = np.linspace(0, len(own) - 1, min(len(own), 1000)).astype(np.int64)
    if not np.array_equal(own[rows].view(bits), other[rows].view(bits)):
        raise ValueError(f"{shared}: not the rows ScaNN indexed; cannot share its dataset")
    with open(assets_path, "w", encoding="utf-8") as f:
        f.write(assets.replace(f'asset_path: "{name}"', f'asset_path: "{shared}"'))
    del own
    os.remove(own_path)
