r"""The re-indexing job: poll the trainer's checkpoints, embed the corpus, publish searchers.

Runs beside a trainer (``pretrain.py`` with ``--config.index.mode=async``, whose own refresher
this is, or any loop saving with ``train.checkpoint.Checkpoints``) until it writes its DONE marker:

  .venv/bin/python experiments/refresh.py --checkpoint_dir=/tmp/run/ckpt \
      --index_dir=/tmp/run/index --blocks=/tmp/blocks   # a data.blocks store (or an .npz)

Prints one ``phase <name> <step>`` line per phase (restore, embed, embed:shard per finished
shard, build, publish:<part>, published, done) on stdout; logs go to stderr.

The corpus is embedded in shards of ``--shard_rows`` blocks under ``<index_dir>/.embed-<step>/``;
killed and started again, the refresher resumes that pass from its finished shards (the result is
bit-identical to an uninterrupted pass). Under ``jax.distributed`` (one refresher process per
host) the shards are split across processes and process 0 merges and publishes.
"""

from __future__ import annotations

import sys

from absl import app, flags

from realm_jax.errors import USER_ERRORS
from realm_jax.index.corpus_pass import SHARD_ROWS
from realm_jax.index.refresher import RefreshConfig, Refresher
from realm_jax.utils import devices

flags.DEFINE_string(
    "checkpoint_dir", None, "The trainer's orbax checkpoint directory.", required=True
)
flags.DEFINE_string("index_dir", None, "Where indexes are published.", required=True)
flags.DEFINE_string("blocks", None, "Block store directory or .npz of token arrays.", required=True)
flags.DEFINE_enum("searcher", "scann", ["scann", "exact"], "Searcher to build.")
flags.DEFINE_enum("emb_dtype", "float32", ["float32", "bfloat16"], "Stored embedding dtype.")
flags.DEFINE_integer("batch_size", 256, "Global embedding batch.", lower_bound=1)
flags.DEFINE_integer("max_len", 288, "Block length the document tower sees.", lower_bound=3)
flags.DEFINE_integer("keep", 3, "Published indexes kept.", lower_bound=1)
flags.DEFINE_float("poll_seconds", 1.0, "Seconds between checkpoint polls.", lower_bound=0.01)
flags.DEFINE_bool("progress", True, "Progress bar while embedding (only on a terminal).")
flags.DEFINE_integer(
    "in_order_every", 0, "Beside a trainer with index.swap_lag: its checkpoint_every_steps (index "
    "every such checkpoint, oldest first); 0: the newest checkpoint first.", lower_bound=0
)
devices.define_flags()
flags.DEFINE_integer(
    "shard_rows", SHARD_ROWS, "Blocks per embedding shard (the unit of resuming).", lower_bound=1
)


def main(argv):
    del argv
    f = flags.FLAGS
    devices.initialize_from_flags()
    config = RefreshConfig(
        f.checkpoint_dir, f.index_dir, f.blocks, f.searcher, f.emb_dtype, f.batch_size,
        f.max_len, f.keep, f.poll_seconds, f.progress, f.shard_rows, f.in_order_every,
    )
    import jax

    me = jax.process_index()
    on_phase = lambda phase, step: me == 0 and print(f"phase {phase} {step}", flush=True)
    try:
        Refresher(config, on_phase=on_phase).run()
    except USER_ERRORS as e:  # a missing block store, a bad flag value, a full disk
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: {f.index_dir} keeps its last published index", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    app.run(main)
