r"""Where XLA CPU loses in BERT attention: head layout and cache-sized batch chunks.

Times one layer's attention core (q k^T, softmax, probs v) at all-MiniLM-L6-v2 shapes in three
layouts: transformers' FlaxBertModel layout ([batch, seq, heads, dim] einsums), ours
([batch, heads, seq, dim] batched GEMMs), and ours with the batch chunked so each chunk's scores
stay in cache (the CPU default of realm_jax.models.bert).

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/attention_layout.py   # ~1 min on 2 cores
"""

from absl import app, flags

from realm_jax.benchmarks.encoder import attention_layout_main

flags.DEFINE_integer("batch_size", 64, "Sequences per batch.")
flags.DEFINE_list("seq_lens", ["128", "288"], "Sequence lengths.")
flags.DEFINE_integer("iters", 10, "Timed iterations (median reported).")


def main(argv):
    del argv
    f = flags.FLAGS
    attention_layout_main(f.batch_size, [int(s) for s in f.seq_lens], f.iters)


if __name__ == "__main__":
    app.run(main)
