"""The paper's index at full size on one host: 13,353,718 x 128 block embeddings.

Synthetic clustered embeddings (the mixture ``benchmarks.mips`` uses) are written chunk by chunk
into a memory-mapped ``.npy`` (float32, or bfloat16 stored as its bits), never held whole in Python
objects. Then: ScaNN build time and peak resident memory, recall@10 of a query sample against exact
search (chunked matmul streamed over the memory map, ``index.searcher.numpy_top_k``), and batched
queries/s. Peak RSS is read from the kernel (``ru_maxrss``), so it covers ScaNN's own copies.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.benchmarks.mips import clustered_vectors
from realm_jax.index.scann_searcher import ScannSearcher
from realm_jax.index.searcher import BFLOAT16, numpy_top_k, recall_at_k
from realm_jax.progress import progress_bar

PAPER_BLOCKS = 13_353_718


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_embeddings(path: str, n: int, centers: np.ndarray, noise: float, dtype, seed: int,
                     chunk: int = 1 << 20) -> np.ndarray:  # fmt: skip
    """[n, dim] clustered rows written to ``path`` in chunks; returns the read-only memory map."""
    rng = np.random.default_rng(seed)
    stored = np.uint16 if dtype == BFLOAT16 else dtype  # bfloat16 as its bits, as index/store.py
    out = np.lib.format.open_memmap(path, "w+", stored, (n, centers.shape[1]))
    with progress_bar(total=n, desc="write", unit="row") as bar:
        for start in range(0, n, chunk):
            rows = clustered_vectors(centers, min(chunk, n - start), noise, rng)
            out[start : start + len(rows)] = rows.astype(dtype).view(stored)
            bar.update(len(rows))
    out.flush()
    del out
    return np.load(path, mmap_mode="r").view(dtype)


def paper_scale_main(n: int, dim: int, dtype_name: str, num_queries: int, num_clusters: int,
                     noise: float, workdir: str, k: int = 10) -> dict:  # fmt: skip
    print(f"machine: {machine_info()}")
    dtype = BFLOAT16 if dtype_name == "bfloat16" else np.dtype(np.float32)
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((num_clusters, dim), dtype=np.float32)
    queries = clustered_vectors(centers, num_queries, noise, rng)
    t = time.perf_counter()
    emb = write_embeddings(os.path.join(workdir, f"emb_{n}_{dtype_name}.npy"), n, centers, noise,
                           dtype, seed=1)  # fmt: skip
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    _, true_ids = numpy_top_k(queries, emb, k, chunk_rows=1 << 18)
    exact_s = time.perf_counter() - t
    t = time.perf_counter()
    searcher = ScannSearcher.build(emb, recall_queries=queries[:64])
    build_s = time.perf_counter() - t
    searcher.search(queries[:8], k)  # warm-up
    t = time.perf_counter()
    _, ids = searcher.search(queries, k)
    search_s = time.perf_counter() - t
    recall = recall_at_k(ids, true_ids)
    record = {
        "benchmark": "paper_scale", "n": n, "dim": dim, "dtype": dtype_name,
        "build_s": round(build_s, 1), "peak_rss_gib": round(peak_rss_gib(), 2),
        "recall_at_10": round(recall, 4), "qps": round(num_queries / search_s, 1),
        "exact_qps": round(num_queries / exact_s, 2), "write_s": round(write_s, 1),
        "num_leaves": searcher.params.num_leaves,
        "leaves_searched": searcher.params.leaves_to_search,
    }  # fmt: skip
    rows = [
        ["write embeddings (memory-mapped)", write_s, None],
        ["exact top-10, streamed matmul", exact_s, num_queries / exact_s],
        ["ScaNN build", build_s, None],
        [f"ScaNN search ({num_queries} queries, batched)", search_s, num_queries / search_s],
    ]
    print(format_table(["phase", "seconds", "queries/s"], rows))
    print(f"recall@10 {recall:.4f}; peak RSS {record['peak_rss_gib']} GiB")
    print(json_line(record))
    return record
