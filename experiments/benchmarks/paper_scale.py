r"""REALM's index at paper size on this host: 13,353,718 x 128 embeddings, searched with ScaNN.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/paper_scale.py --dtype=bfloat16
  XLA_FLAGS= .venv/bin/python experiments/benchmarks/paper_scale.py --n=1000000   # a smaller check

Needs ~8 GB (bfloat16) or ~15 GB (float32) of disk under --workdir while it runs: the
embeddings, and the published index's copy of them plus ScaNN's codes (removed at the end).
Takes ~7-8 min here. Prints a table and a final JSON line {"benchmark": "paper_scale", "n",
"build_s", "peak_rss_gib", "recall_at_10", "qps", ...}. Goals: build <= 15 min,
peak RSS <= 12 GiB with bfloat16 storage, recall@10 >= 0.9, >= 1,000 queries/s batched.
Measured: experiments/benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.paper_scale import PAPER_BLOCKS, paper_scale_main  # noqa: E402

flags.DEFINE_integer("n", PAPER_BLOCKS, "Block embeddings (the paper: 13,353,718).")
flags.DEFINE_integer("dim", 128, "Embedding size (REALM: 128).")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "Storage dtype on disk.")
flags.DEFINE_integer("queries", 1000, "Query sample for recall and queries/s.")
flags.DEFINE_integer("clusters", 4096, "Mixture components of the synthetic embeddings.")
flags.DEFINE_float(
    "noise", 0.6, "Spread around each component (as mips.py; unit-variance centres)."
)
flags.DEFINE_string("workdir", "/tmp/paper_scale", "Where the memory-mapped embeddings go.")


def main(argv):
    del argv
    f = flags.FLAGS
    paper_scale_main(f.n, f.dim, f.dtype, f.queries, f.clusters, f.noise, f.workdir)


if __name__ == "__main__":
    app.run(main)
