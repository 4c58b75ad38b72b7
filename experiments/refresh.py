r"""The re-indexing job: poll the trainer's checkpoints, embed the corpus, publish searchers.

Runs beside a trainer (``pretrain.py`` with ``--config.index.mode=async``, whose own refresher
this is, or any loop saving with ``train.checkpoint.Checkpoints``) until it writes its DONE marker:

  .venv/bin/python experiments/refresh.py --checkpoint_dir=/tmp/run/ckpt \
      --index_dir=/tmp/run/index --blocks=/tmp/blocks   # a data.blocks store (or an .npz)

Prints one ``phase <name> <step>`` line per phase (restore, embed, build, publish:<part>,
published, done) on stdout; logs go to stderr.
"""

from __future__ import annotations

from absl import app, flags

from realm_jax.index.refresher import RefreshConfig, Refresher

flags.DEFINE_string(
    "checkpoint_dir", None, "The trainer's orbax checkpoint directory.", required=True
)
flags.DEFINE_string("index_dir", None, "Where indexes are published.", required=True)
flags.DEFINE_string("blocks", None, "Block store directory or .npz of token arrays.", required=True)
flags.DEFINE_enum("searcher", "scann", ["scann", "exact"], "Searcher to build.")
flags.DEFINE_enum("emb_dtype", "float32", ["float32", "bfloat16"], "Stored embedding dtype.")
flags.DEFINE_integer("batch_size", 256, "Global embedding batch.")
flags.DEFINE_integer("max_len", 288, "Block length the document tower sees.")
flags.DEFINE_integer("keep", 3, "Published indexes kept.")
flags.DEFINE_float("poll_seconds", 1.0, "Seconds between checkpoint polls.")
flags.DEFINE_bool("progress", True, "Progress bar while embedding (only on a terminal).")


def main(argv):
    del argv
    f = flags.FLAGS
    config = RefreshConfig(
        f.checkpoint_dir, f.index_dir, f.blocks, f.searcher, f.emb_dtype, f.batch_size,
        f.max_len, f.keep, f.poll_seconds, f.progress,
    )  # fmt: skip
    on_phase = lambda phase, step: print(f"phase {phase} {step}", flush=True)
    Refresher(config, on_phase=on_phase).run()


if __name__ == "__main__":
    app.run(main)
