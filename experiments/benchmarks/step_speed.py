r"""One REALM pre-training step: our pmapped step vs transformers' PyTorch REALM port.

MiniLM-size encoder (6 layers x 384, random init shared by both), batch 4, 8 candidates,
query 96 + candidate 288 tokens (joint input 384), forward + backward + clipping + AdamW.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/step_speed.py   # ~4 min on 2 cores

Last line: {"benchmark": "train_step", "jax_steps_per_s": ..., "torch_steps_per_s": ...,
"ratio": ...} with ratio = jax / torch steps per second.
"""

import os

os.environ.setdefault("USE_TF", "0")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.step_speed import train_step_main  # noqa: E402

flags.DEFINE_integer("batch_size", 4, "Masked queries per step.")
flags.DEFINE_integer("num_candidates", 8, "K: retrieved blocks per query.")
flags.DEFINE_integer("query_len", 96, "Query length in wordpieces.")
flags.DEFINE_integer("cand_len", 288, "Candidate block length in wordpieces.")
flags.DEFINE_integer("num_masks", 10, "Masked wordpieces per query.")
flags.DEFINE_integer("iters", 3, "Timed steps per implementation (median reported).")
flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads for the port.")


def main(argv):
    del argv
    f = flags.FLAGS
    train_step_main(
        f.batch_size,
        f.num_candidates,
        f.query_len,
        f.cand_len,
        f.num_masks,
        f.iters,
        f.torch_threads,
    )


if __name__ == "__main__":
    app.run(main)
