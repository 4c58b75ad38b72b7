"""MIPS benchmark: exact numpy, our sharded ExactSearcher, our ScannSearcher and raw ScaNN."""

from __future__ import annotations

import time

import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info, time_interleaved
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import LEAVES_SEARCHED, ScannSearcher, scann_params
from realm_jax.index.searcher import numpy_top_k, recall_at_k


def clustered_vectors(
    centers: np.ndarray, n: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """[n, dim] float32 draws around random rows of centers [clusters, dim], spread ``noise``."""
    out = rng.standard_normal((n, centers.shape[1]), dtype=np.float32)
    out *= noise
    out += centers[rng.integers(0, len(centers), n)]
    return out


def _time_exact(block_emb, queries, k, true_ids, rounds) -> tuple[float, float, float]:
    """(build seconds, queries/s, recall@k) of our ExactSearcher; its device copy is freed after."""
    start = time.perf_counter()
    exact = ExactSearcher(block_emb)
    build = time.perf_counter() - start
    seconds = time_interleaved({"exact": lambda: exact.search(queries, k)}, rounds, 1)["exact"]
    return build, len(queries) / seconds, recall_at_k(exact.search(queries, k)[1], true_ids)


def mips_main(
    n: int,
    dim: int,
    num_queries: int,
    k: int,
    rounds: int,
    num_clusters: int,
    noise: float,
    leaves_searched: float = LEAVES_SEARCHED,
) -> dict:
    """Builds each searcher over n clustered vectors, times num_queries top-k queries, prints."""
    print(f"machine: {machine_info()}")
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((num_clusters, dim), dtype=np.float32)  # unit variance
    block_emb = clustered_vectors(centers, n, noise, rng)
    queries = clustered_vectors(centers, num_queries, noise, rng)  # the same mixture
    rows = []

    start = time.perf_counter()
    _, true_ids = numpy_top_k(queries, block_emb, k)
    numpy_s = time.perf_counter() - start  # once: ~10 s at 1M, the baseline and the truth
    rows.append(["exact numpy (chunked matmul + argpartition)", 0.0, num_queries / numpy_s, 1.0])

    rows.append(
        ["ExactSearcher (jax, sharded)", *_time_exact(block_emb, queries, k, true_ids, rounds)]
    )

    params = scann_params(n, leaves_searched)
    start = time.perf_counter()
    searcher = ScannSearcher.build(block_emb, params, recall_k=k)
    scann_build = time.perf_counter() - start
    kwargs = searcher.search_kwargs(k)
    raw = searcher.scann.search_batched_parallel
    times = time_interleaved(
        {"ours": lambda: searcher.search(queries, k), "raw": lambda: raw(queries, **kwargs)},
        rounds,
        warmup=1,
    )
    ours_recall = recall_at_k(searcher.search(queries, k)[1], true_ids)
    raw_recall = recall_at_k(np.asarray(raw(queries, **kwargs)[0]), true_ids)
    rows.append(["ScannSearcher (ours)", scann_build, num_queries / times["ours"],
                 ours_recall])
    rows.append(["raw ScaNN search_batched_parallel", scann_build, num_queries / times["raw"],
                 raw_recall])
    numpy_qps = num_queries / numpy_s
    for row in rows:
        row.append(row[2] / numpy_qps)
    print(f"\n{n:,} x {dim} clustered float32 ({num_clusters} clusters, noise {noise}), "
          f"{num_queries} queries, top-{k}; median of {rounds} interleaved rounds")
    print(f"ScaNN: {params}; recall at build {searcher.recall}")
    print(format_table(["searcher", "build s", "queries/s", f"recall@{k}", "x numpy"], rows))
    result = {
        "benchmark": "mips",
        "n": n,
        "exact_qps": numpy_qps,
        "jax_exact_qps": rows[1][2],
        "scann_qps": num_queries / times["ours"],
        f"scann_recall_at_{k}": ours_recall,
        "raw_scann_qps": num_queries / times["raw"],
        "scann_vs_raw": times["raw"] / times["ours"],
        "scann_vs_exact": numpy_s / times["ours"],
        "scann_build_s": scann_build,
    }
    print(json_line(result))
    return result
