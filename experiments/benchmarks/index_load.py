r"""Index load at paper size: the default sampled check against the full SHA-256 of every byte.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/index_load.py               # 13,353,718 rows
  XLA_FLAGS= .venv/bin/python experiments/benchmarks/index_load.py --n=100000    # seconds

Needs ~3.5 GB of disk under --workdir while it runs (bfloat16 embeddings; removed at the end).
Prints a table (verify and load, each check, cold and warm page cache) and a final JSON line
{"benchmark": "index_load", "n", "embeddings_bytes", "publish_s", "verify_sampled_cold_s",
"verify_full_cold_s", "load_sampled_cold_s", "load_full_cold_s", ...}.
Measured: experiments/benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.index_load import index_load_main  # noqa: E402
from realm_jax.benchmarks.paper_scale import PAPER_BLOCKS  # noqa: E402

_N = flags.DEFINE_integer("n", PAPER_BLOCKS, "Block embeddings (the paper: 13,353,718).")
_DIM = flags.DEFINE_integer("dim", 128, "Embedding size (REALM: 128).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds of every measurement; best and worst shown.",
                               lower_bound=1)
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/realm_jax_index_load", "Scratch directory.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    index_load_main(_N.value, _DIM.value, _WORKDIR.value, _ROUNDS.value)


if __name__ == "__main__":
    app.run(main)
