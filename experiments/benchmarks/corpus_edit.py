r"""Corpus edit cost vs the size of the change, beside a full re-index of every block.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/corpus_edit.py   # ~2 min on 2 cores

Prints a table (operation, blocks embedded, seconds) and a final JSON line
{"benchmark": "corpus_edit", "num_blocks", "edit_<n>_blocks", "edit_<n>_s", "reindex_s", ...}.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("USE_TF", "0")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.corpus_edit import corpus_edit_main  # noqa: E402

flags.DEFINE_integer("num_passages", 2000, "Mini passages added to the 8 facts as the corpus.")
flags.DEFINE_list("sizes", ["1", "10", "100"], "Documents replaced per edit.")


def main(argv):
    del argv
    corpus_edit_main(flags.FLAGS.num_passages, tuple(int(n) for n in flags.FLAGS.sizes))


if __name__ == "__main__":
    app.run(main)
