"""MIPS benchmark: exact numpy, our sharded ExactSearcher, our ScannSearcher, raw ScaNN, and faiss
(flat, IVF, HNSW) at matched recall, against the compute limit of this CPU."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info, time_interleaved
from realm_jax.benchmarks.mips_sweep import (
    RECALL_TARGETS,
    best_at,
    faiss_points,
    matched_recall_rows,
    plot_recall_qps,
    scann_points,
)
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


def gemm_peak_gflops(dim: int, rounds: int = 5) -> dict[str, float]:
    """float32 GFLOP/s of exact search's matmul alone, 1,024 queries x ``dim``: numpy (BLAS) into
    a preallocated [1024, 65536] output, and XLA scanning 1M rows in chunks of 16,384 keeping only
    a row maximum (what any exact top-k must at least do)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    a = rng.standard_normal((1024, dim), dtype=np.float32)
    b = rng.standard_normal((65536, dim), dtype=np.float32)
    out = np.empty((1024, 65536), np.float32)
    chunks = jnp.asarray(np.tile(b, (16, 1)).reshape(64, 16384, dim))
    scan = jax.jit(lambda q, c: jax.lax.scan(lambda m, x: (jnp.maximum(m, (q @ x.T).max(1)), None),
                                              jnp.full(len(q), -jnp.inf), c)[0])
    qa = jnp.asarray(a)
    # One after the other, not interleaved. Chunks of 16,384 rows: with chunks of 65,536 (scores
    # [1024, 65536], 256 MiB) the same scan measured 84-91 GFLOP/s, against 216 here.
    seconds = time_interleaved({"numpy": lambda: np.matmul(a, b.T, out=out)}, rounds, 2)
    seconds |= time_interleaved({"xla": lambda: scan(qa, chunks).block_until_ready()}, rounds, 2)
    flops = 2 * a.shape[0] * b.shape[0] * dim
    return {"numpy": flops / seconds["numpy"] / 1e9, "xla": 16 * flops / seconds["xla"] / 1e9}


def _time_exact(block_emb, queries, k, true_ids, rounds) -> tuple[float, float, float]:
    """(build seconds, queries/s, recall@k) of our ExactSearcher; its device copy is freed after."""
    start = time.perf_counter()
    exact = ExactSearcher(block_emb)
    build = time.perf_counter() - start
    seconds = time_interleaved({"exact": lambda: exact.search(queries, k)}, rounds, 1)["exact"]
    return build, len(queries) / seconds, recall_at_k(exact.search(queries, k)[1], true_ids)


def baseline_rows(block_emb, queries, k, rounds, leaves_searched) -> tuple[list, dict, np.ndarray]:
    """numpy, ExactSearcher, ScannSearcher at its defaults and raw ScaNN: (rows, figures, truth)."""
    n, num_queries = len(block_emb), len(queries)
    start = time.perf_counter()
    _, true_ids = numpy_top_k(queries, block_emb, k)
    numpy_s = time.perf_counter() - start  # once: ~10 s at 1M, the baseline and the truth
    rows = [["exact numpy (chunked matmul + argpartition)", 0.0, num_queries / numpy_s, 1.0]]
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
    rows.append(["ScannSearcher (ours, defaults)", scann_build, num_queries / times["ours"],
                 ours_recall])
    rows.append(["raw ScaNN search_batched_parallel", scann_build, num_queries / times["raw"],
                 raw_recall])
    for row in rows:
        row.append(row[2] * numpy_s / num_queries)
    figures = {
        "exact_qps": num_queries / numpy_s,
        "jax_exact_qps": rows[1][2],
        "scann_qps": num_queries / times["ours"],
        f"scann_recall_at_{k}": ours_recall,
        "raw_scann_qps": num_queries / times["raw"],
        "scann_vs_raw": times["raw"] / times["ours"],
        "scann_vs_exact": numpy_s / times["ours"],
        "scann_build_s": scann_build,
        "scann_params": str(params),
    }
    return rows, figures, true_ids


def sweep_figures(points, jax_exact_qps: float) -> dict:
    """The JSON figures of a sweep: faiss flat, ScaNN and the best faiss method at recall 0.95."""
    flat = next(p for p in points if p.method == "faiss FlatIP")
    at_095 = best_at(points, 0.95)
    faiss_095 = {m: p for m, p in at_095.items() if m.startswith("faiss")}
    best_faiss = max(faiss_095.values(), key=lambda p: p.qps)
    scann = at_095.get("ScannSearcher (ours)")
    return {
        "faiss_flat_qps": flat.qps,
        "jax_exact_vs_faiss_flat": jax_exact_qps / flat.qps,
        "scann_qps_at_095": scann.qps if scann else None,
        "scann_setting_at_095": scann.setting if scann else None,
        "best_faiss_qps_at_095": best_faiss.qps,
        "best_faiss_method": f"{best_faiss.method} {best_faiss.setting}",
        "scann_vs_best_faiss_at_095": scann.qps / best_faiss.qps if scann else None,
    }


def run_set(name, block_emb, queries, k, rounds, leaves_searched, plot, faiss) -> dict:
    """Every method on one set of vectors; prints its two tables, writes its plot."""
    n, dim = block_emb.shape
    print(f"\n## {name}: {n:,} x {dim} float32, {len(queries)} queries, top-{k}, "
          f"median of {rounds} interleaved rounds", flush=True)
    rows, figures, true_ids = baseline_rows(block_emb, queries, k, rounds, leaves_searched)
    print(format_table(["searcher", "build s", "queries/s", f"recall@{k}", "x numpy"], rows))
    if not faiss:
        return figures
    points = scann_points(block_emb, queries, true_ids, k, rounds)
    points += faiss_points(block_emb, queries, true_ids, k, rounds)
    figures.update(sweep_figures(points, figures["jax_exact_qps"]))
    headers = ["method", "build s", "index MiB"] + [f"q/s at recall@{k} >= {t}"
                                                    for t in RECALL_TARGETS]
    print(f"\nAt matched recall ({name}); the fastest setting of each method that reaches it:")
    print(format_table(headers, matched_recall_rows(points)))
    if plot:
        plot_recall_qps(points, plot, f"{name}: {n:,} x {dim}, {len(queries)} queries, top-{k}")
        with open(os.path.splitext(plot)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump([vars(p) for p in points], f, indent=1)
        print(f"wrote {plot} and its points beside it (.json)")
    figures["points"] = [vars(p) for p in points]
    return figures


def mips_main(
    n: int,
    dim: int,
    num_queries: int,
    k: int,
    rounds: int,
    num_clusters: int,
    noise: float,
    leaves_searched: float = LEAVES_SEARCHED,
    faiss: bool = True,
    plot: str | None = None,
    real: tuple[np.ndarray, np.ndarray] | None = None,
    real_plot: str | None = None,
) -> dict:
    """Builds each searcher over n clustered vectors (and ``real`` = (blocks, queries) when given),
    times num_queries top-k queries, prints the tables and the JSON line."""
    print(f"machine: {machine_info()}")
    peaks = gemm_peak_gflops(dim)
    gflops = max(peaks.values())
    limit_qps = gflops * 1e9 / (2 * n * dim)
    print(f"float32 GEMM of 1024 queries x {dim}: numpy {peaks['numpy']:.0f}, XLA (matmul + row "
          f"max) {peaks['xla']:.0f} GFLOP/s -> compute limit of exact search over {n:,} rows: "
          f"{limit_qps:.0f} queries/s (the faster)", flush=True)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((num_clusters, dim), dtype=np.float32)  # unit variance
    block_emb = clustered_vectors(centers, n, noise, rng)
    queries = clustered_vectors(centers, num_queries, noise, rng)  # the same mixture
    name = f"clustered synthetic ({num_clusters} clusters, noise {noise})"
    figures = run_set(name, block_emb, queries, k, rounds, leaves_searched, plot, faiss)
    del block_emb
    skip = ("points", "scann_params")
    result = {"benchmark": "mips", "n": n, **{k_: v for k_, v in figures.items() if k_ not in skip}}
    result["gemm_gflops"] = gflops
    result["compute_limit_qps"] = limit_qps
    result["jax_exact_vs_limit"] = figures["jax_exact_qps"] / limit_qps
    if real is not None:
        real_figures = run_set("real mini corpus", *real, k, rounds, leaves_searched, real_plot,
                               faiss)
        result["real"] = {k_: v for k_, v in real_figures.items() if k_ not in skip}
        result["real"]["n"] = len(real[0])
    print(json_line(result))
    return result
