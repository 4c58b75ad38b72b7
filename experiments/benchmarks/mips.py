r"""MIPS: exact numpy, our ExactSearcher, our ScannSearcher, raw ScaNN: recall@10 and queries/s.

1,000,000 x 128 clustered synthetic float32 vectors, 1,000 queries from the same mixture:

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/mips.py   # ~2 min and ~3 GB on 2 cores

Goals: ScannSearcher >= 50x exact numpy at recall@10 >= 0.95, within 5% of raw ScaNN (same index,
same parameters; ours adds exact rescoring). Last line: {"benchmark": "mips", "n": 1000000,
"exact_qps": ..., "scann_qps": ..., "scann_recall_at_10": ..., "raw_scann_qps": ...}.
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


def main(argv):
    del argv
    f = flags.FLAGS
    mips_main(f.n, f.dim, f.num_queries, f.k, f.rounds, f.num_clusters, f.noise, f.leaves_searched)


if __name__ == "__main__":
    app.run(main)
