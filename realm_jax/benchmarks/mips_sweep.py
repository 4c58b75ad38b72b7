"""The MIPS methods a user would pick instead of ours, each swept over its speed/recall knob.

faiss ``IndexFlatIP`` (exact), ``IndexIVFFlat`` (nlist ~ 4 sqrt(N), nprobe swept),
``IndexHNSWFlat`` (M 32, efSearch swept) and ScaNN through our ScannSearcher (leaves searched and
reorder depth swept), all on the same vectors and queries. Each sweep point is one row of
``SweepPoint``; ``best_at`` picks, per method, the fastest point that reaches a recall.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from realm_jax.benchmarks.common import time_interleaved
from realm_jax.index.scann_searcher import (
    BRUTE_FORCE_BELOW,
    ScannParams,
    ScannSearcher,
    scann_params,
)
from realm_jax.index.searcher import recall_at_k

RECALL_TARGETS = (0.90, 0.95, 0.99)
IVF_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512)
SCANN_LEAF_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)
SCANN_REORDER = (50, 100, 200)


@dataclasses.dataclass
class SweepPoint:
    method: str  # e.g. "faiss IVFFlat"
    setting: str  # the swept knob, e.g. "nprobe=16"
    build_s: float
    index_mib: float  # serialized index (what a user keeps in memory), vectors included
    qps: float
    recall: float


def import_faiss():
    """faiss, or an ImportError naming the pin to install."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "faiss is not installed: pip install faiss-cpu (pinned in requirements.txt)"
        ) from e
    return faiss


def _timed(search: Callable[[], np.ndarray], num_queries: int, rounds: int) -> float:
    return num_queries / time_interleaved({"s": search}, rounds, warmup=1)["s"]


def _faiss_mib(faiss, index) -> float:
    return faiss.serialize_index(index).nbytes / 2**20


def faiss_points(
    block_emb: np.ndarray,
    queries: np.ndarray,
    true_ids: np.ndarray,
    k: int,
    rounds: int,
    log: Callable[[str], None] = print,
) -> list[SweepPoint]:
    """Flat, IVFFlat (nprobe swept) and HNSWFlat (efSearch swept) over block_emb [N, D]."""
    faiss = import_faiss()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    n, dim = block_emb.shape
    points = []

    def sweep(method, index, build_s, knob, values, set_knob):
        mib = _faiss_mib(faiss, index)
        for value in values:
            set_knob(value)
            ids = index.search(queries, k)[1]
            qps = _timed(lambda: index.search(queries, k), len(queries), rounds)
            points.append(
                SweepPoint(method, f"{knob}={value}", build_s, mib, qps,
                           recall_at_k(ids, true_ids))
            )
            log(f"  {method} {knob}={value}: {qps:,.0f} q/s, recall {points[-1].recall:.3f}")

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(block_emb)
    sweep("faiss FlatIP", flat, time.perf_counter() - start, "exact", ["-"], lambda v: None)
    flat.reset()  # frees its copy of the vectors

    nlist = max(1, round(4 * math.sqrt(n)))
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    train = block_emb[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)]
    ivf.train(train)  # 64 points a list: faiss warns below 39
    ivf.add(block_emb)
    nprobes = [p for p in IVF_NPROBES if p <= nlist]
    sweep(f"faiss IVFFlat (nlist {nlist})", ivf, time.perf_counter() - start, "nprobe", nprobes,
          lambda v: setattr(ivf, "nprobe", v))
    ivf.reset()

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(block_emb)
    sweep("faiss HNSWFlat (M 32)", hnsw, time.perf_counter() - start, "efSearch",
          HNSW_EF_SEARCH, lambda v: setattr(hnsw.hnsw, "efSearch", v))
    return points


def scann_points(
    block_emb: np.ndarray,
    queries: np.ndarray,
    true_ids: np.ndarray,
    k: int,
    rounds: int,
    log: Callable[[str], None] = print,
) -> list[SweepPoint]:
    """Our ScannSearcher (ScaNN candidates, exact rescoring), one build, leaves and reorder swept.

    Built with ~sqrt(N) leaves as ``scann_params`` chooses (a tree even below its brute-force
    size, so the sweep means something on a small corpus).
    """
    n = len(block_emb)
    leaves = max(2, round(math.sqrt(n)))
    params = ScannParams(leaves, max(1, leaves // 20), min(n, max(50_000, 100 * leaves)))
    start = time.perf_counter()
    built = ScannSearcher.build(block_emb, params, recall_k=k, recall_queries=queries[:64])
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        built.save(tmp)
        mib = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**20
    points = []
    if n < BRUTE_FORCE_BELOW:  # what our index uses at this size: ScaNN's exact brute force
        start = time.perf_counter()
        default = ScannSearcher.build(block_emb, scann_params(n), recall_k=k,
                                      recall_queries=queries[:64])
        brute_s = time.perf_counter() - start
        ids = default.search(queries, k)[1]
        qps = _timed(lambda: default.search(queries, k), len(queries), rounds)
        points.append(SweepPoint("ScannSearcher (ours)", f"brute force (N < {BRUTE_FORCE_BELOW})",
                                 brute_s, mib, qps, recall_at_k(ids, true_ids)))
    for leaves_searched in sorted({max(1, math.ceil(leaves * f)) for f in SCANN_LEAF_FRACTIONS}):
        for reorder in SCANN_REORDER:
            swept = dataclasses.replace(params, leaves_to_search=leaves_searched, reorder=reorder)
            searcher = ScannSearcher(built.scann, block_emb, swept)
            ids = searcher.search(queries, k)[1]
            qps = _timed(lambda s=searcher: s.search(queries, k), len(queries), rounds)
            setting = f"leaves={leaves_searched}/{leaves},reorder={reorder}"
            points.append(
                SweepPoint("ScannSearcher (ours)", setting, build_s, mib, qps,
                           recall_at_k(ids, true_ids))
            )
            log(f"  ScannSearcher {setting}: {qps:,.0f} q/s, recall {points[-1].recall:.3f}")
    return points


def best_at(points: Sequence[SweepPoint], target: float) -> dict[str, SweepPoint]:
    """Per method, the fastest point with recall >= target (methods that never reach it omitted)."""
    best: dict[str, SweepPoint] = {}
    for p in points:
        if p.recall >= target and (p.method not in best or p.qps > best[p.method].qps):
            best[p.method] = p
    return best


def matched_recall_rows(
    points: Sequence[SweepPoint], targets: Sequence[float] = RECALL_TARGETS
) -> list[list]:
    """[method, build s, index MiB, then per target 'q/s (setting)' or 'not reached']."""
    rows = []
    for method in dict.fromkeys(p.method for p in points):
        first = next(p for p in points if p.method == method)
        row = [method, first.build_s, first.index_mib]
        for target in targets:
            p = best_at(points, target).get(method)
            row.append(f"{p.qps:,.0f} ({p.setting})" if p else "not reached")
        rows.append(row)
    return rows


def pareto_front(points: Sequence[SweepPoint]) -> list[SweepPoint]:
    """The settings no other setting beats on both recall and queries/s, by rising recall."""
    front, best_qps = [], -1.0
    for p in sorted(points, key=lambda p: (-p.recall, -p.qps)):
        if p.qps > best_qps:
            front.append(p)
            best_qps = p.qps
    return front[::-1]


def plot_recall_qps(points: Sequence[SweepPoint], path: str, title: str) -> None:
    """Recall@k against queries/s (log scale) to a PNG: each method's Pareto front as a line, all
    its settings as faint dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(p.method for p in points):
        mine = [p for p in points if p.method == method]
        front = pareto_front(mine)
        line = ax.plot([p.recall for p in front], [p.qps for p in front], "o-", label=method, ms=3)
        ax.plot([p.recall for p in mine], [p.qps for p in mine], ".", color=line[0].get_color(),
                alpha=0.35, ms=4)
    for target in RECALL_TARGETS:
        ax.axvline(target, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries / s (log)")
    ax.set_yscale("log")
    ax.set_xlim(left=max(0.4, min(p.recall for p in points) - 0.02), right=1.005)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
