r"""Encoder throughput: our jitted Flax BERT vs transformers' PyTorch BertModel on all-MiniLM-L6-v2.

Same weights, same padded batches of real Wikipedia passages (the packaged mini corpus), both
after warm-up; torch with ``--torch_threads`` threads, XLA on one CPU device (all cores).
transformers' own FlaxBertModel is timed too, as the reference JAX implementation.

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/encoder_throughput.py   # ~3 min on 2 cores

Last line: {"benchmark": "encoder_throughput", "seq_len": 128, "jax_seqs_per_s": ...,
"torch_seqs_per_s": ..., "ratio": ...} with ratio = jax / torch at 128 tokens.
"""

from __future__ import annotations

import os

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.encoder import encoder_throughput_main  # noqa: E402

flags.DEFINE_integer("batch_size", 64, "Sequences per batch.")
flags.DEFINE_list("seq_lens", ["128", "288"], "Padded sequence lengths to time.")
flags.DEFINE_integer("iters", 8, "Timed iterations per measurement (median reported).")
flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads for the PyTorch baseline.")
flags.DEFINE_bool("hf_flax", True, "Also time transformers' FlaxBertModel.")


def main(argv):
    del argv
    f = flags.FLAGS
    encoder_throughput_main(
        f.batch_size, [int(s) for s in f.seq_lens], f.iters, f.torch_threads, f.hf_flax
    )


if __name__ == "__main__":
    app.run(main)
