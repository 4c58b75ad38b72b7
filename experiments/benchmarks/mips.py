r"""MIPS against the tools a user would pick instead: exact numpy, our ExactSearcher, our
ScannSearcher, raw ScaNN, faiss IndexFlatIP / IndexIVFFlat / IndexHNSWFlat, at matched recall.

1,000,000 x 128 clustered synthetic float32 vectors, 1,000 queries from the same mixture; with
``--real_dir`` also the real mini corpus (``blocks.npy``, ``queries.npy`` as written by
``corpus_embedding.py --save_dir``):

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/mips.py \
      --real_dir=runs/benchmarks/mini_embeddings   # ~15 min and ~4 GB on 2 cores

Each approximate method is swept (IVF nprobe, HNSW efSearch, ScaNN leaves searched x reorder
depth); the matched-recall table gives each method's fastest setting at recall@10 >= 0.90, 0.95,
0.99, and ``--plot`` draws recall against queries/s. The compute limit of exact search is the
float32 GEMM peak measured here divided by 2 N D flops a query.

Goals: at recall@10 >= 0.95 ScannSearcher >= the best faiss method; ExactSearcher >= faiss flat.
Last line: {"benchmark": "mips", "n": ..., "exact_qps": ..., "jax_exact_qps": ..., "scann_qps": ...,
"faiss_flat_qps": ..., "scann_qps_at_095": ..., "best_faiss_qps_at_095": ...,
"best_faiss_method": ..., "compute_limit_qps": ..., "real": {...}}.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.mips import mips_main  # noqa: E402
from realm_jax.index.scann_searcher import LEAVES_SEARCHED  # noqa: E402

flags.DEFINE_integer("n", 1_000_000, "Block embeddings.")
flags.DEFINE_integer("dim", 128, "Embedding size (REALM: 128).")
flags.DEFINE_integer("num_queries", 1000, "Queries per timed search.")
flags.DEFINE_integer("k", 10, "Neighbours per query.")
flags.DEFINE_integer("rounds", 5, "Timed rounds (median reported).")
flags.DEFINE_integer("num_clusters", 1000, "Gaussian mixture components.")
flags.DEFINE_float("noise", 0.6, "Spread of each component (centers have unit variance).")
flags.DEFINE_float("leaves_searched", LEAVES_SEARCHED, "Fraction of ScaNN leaves searched.")
flags.DEFINE_bool("faiss", True, "Time faiss and the matched-recall sweeps.")
flags.DEFINE_string("plot", "experiments/benchmarks/mips_recall_qps.png",
                    "Recall / queries-per-second PNG of the synthetic set ('' for none).")
flags.DEFINE_string("real_dir", None,
                    "A directory with blocks.npy and queries.npy (corpus_embedding.py --save_dir).")
flags.DEFINE_string("real_plot", "experiments/benchmarks/mips_recall_qps_mini.png",
                    "The same plot for --real_dir ('' for none).")


def main(argv):
    del argv
    f = flags.FLAGS
    real = None
    if f.real_dir:
        import numpy as np

        from realm_jax.utils.paths import missing_file_reason

        paths = [os.path.join(f.real_dir, name) for name in ("blocks.npy", "queries.npy")]
        for path in paths:
            if reason := missing_file_reason(path):
                raise SystemExit(f"error: --real_dir: {path}: {reason}")
        real = tuple(np.load(path).astype(np.float32) for path in paths)
    mips_main(f.n, f.dim, f.num_queries, f.k, f.rounds, f.num_clusters, f.noise,
              f.leaves_searched, f.faiss, f.plot or None, real, f.real_plot or None)


if __name__ == "__main__":
    app.run(main)
