r"""A refresher SIGKILLed half-way through a 500k-block embedding pass resumes from its shards and
publishes embeddings bit-identical to an uninterrupted pass.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/refresh_resume.py
  XLA_FLAGS= .venv/bin/python experiments/benchmarks/refresh_resume.py --num_blocks=20000  # quick

The tower is a 2-layer, 32-wide BERT with REALM's 128-d projection (a full BERT-base pass over
500k blocks would take days on 2 cores; resuming does not depend on the tower's size). Needs
~0.5 GB under --workdir. Prints a table and a final JSON line
{"benchmark": "refresh_resume", "identical": ..., "uninterrupted_s", "resumed_s", ...}.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.refresh_resume import refresh_resume_main  # noqa: E402

flags.DEFINE_integer("num_blocks", 500_000, "Corpus size.")
flags.DEFINE_integer("length", 32, "Tokens per block.")
flags.DEFINE_integer("shard_rows", 16_384, "Blocks per embedding shard.")
flags.DEFINE_integer("batch_size", 1024, "Global embedding batch.")
flags.DEFINE_enum("emb_dtype", "bfloat16", ["bfloat16", "float32"], "Stored embedding dtype.")
flags.DEFINE_string("workdir", "/tmp/refresh_resume", "Checkpoint, corpus and both indexes.")


def main(argv):
    del argv
    f = flags.FLAGS
    if os.path.exists(f.workdir) and os.listdir(f.workdir):
        raise app.UsageError(f"--workdir={f.workdir} is not empty")
    refresh_resume_main(f.num_blocks, f.length, f.shard_rows, f.batch_size, f.emb_dtype, f.workdir)


if __name__ == "__main__":
    app.run(main)
