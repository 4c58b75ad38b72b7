r"""Refresh pipeline throughput: restore + embed + build + publish vs the bare encoder, same blocks.

The first ``--num_passages`` passages of the packaged mini corpus, packed into blocks; the bare
encoder is the refresher's own pmapped document tower run over the same length-bucketed batches,
pre-staged on the device (no host work), so the ratio is the pipeline's overhead:

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/refresh_speed.py   # ~6 min on 2 cores

Goal: pipeline >= 0.9x the bare encoder. Last line: {"benchmark": "refresh", ...,
"bare_blocks_per_s": ..., "pipeline_blocks_per_s": ..., "ratio": ...}.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("USE_TF", "0")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.refresh_speed import refresh_main  # noqa: E402

flags.DEFINE_enum(
    "model", "minilm", ["minilm", "tiny"], "Document tower: all-MiniLM-L6-v2 or tiny."
)
flags.DEFINE_integer("num_passages", 1000, "Mini-corpus passages to pack into blocks.")
flags.DEFINE_integer("batch_size", 64, "Global embedding batch.")
flags.DEFINE_integer("max_len", 288, "Block length (REALM: 288).")
flags.DEFINE_enum("searcher", "scann", ["scann", "exact"], "Searcher the refresh builds.")
flags.DEFINE_integer("rounds", 3, "Timed refreshes (after one that compiles).")


def main(argv):
    del argv
    f = flags.FLAGS
    refresh_main(f.model, f.num_passages, f.batch_size, f.max_len, f.searcher, f.rounds)


if __name__ == "__main__":
    app.run(main)
