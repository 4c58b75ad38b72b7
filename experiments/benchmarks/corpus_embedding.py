r"""Embedding the real mini corpus: our CorpusEmbedder vs transformers' PyTorch BertModel with
length-sorted dynamic padding, same weights (all-MiniLM-L6-v2 + one 128-d projection), torch with
``--torch_threads`` threads, XLA on one CPU device (all cores).

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/corpus_embedding.py \
      --save_dir=runs/benchmarks/mini_embeddings   # ~15 min on 2 cores

``--save_dir`` also writes blocks.npy and queries.npy (the mini train questions) for
``mips.py --real_dir``. Goal: ours >= 1.3x PyTorch. Last line: {"benchmark": "corpus_embedding",
"num_blocks": ..., "jax_blocks_per_s": ..., "torch_blocks_per_s": ..., "ratio": ...}.
"""

from __future__ import annotations

import os

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.corpus_embedding import corpus_embedding_main  # noqa: E402

flags.DEFINE_integer("num_passages", 0, "Mini-corpus passages to pack into blocks (0: all).")
flags.DEFINE_integer("batch_size", 128, "Blocks per batch, both sides.")
flags.DEFINE_integer("max_len", 288, "Longest block in wordpieces (REALM: 288).")
flags.DEFINE_integer("rounds", 2, "Timed whole passes per side, alternating (median reported).")
flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads for the PyTorch side.")
flags.DEFINE_string("save_dir", None, "Write blocks.npy and queries.npy here (for mips.py).")


def main(argv):
    del argv
    f = flags.FLAGS
    corpus_embedding_main(f.num_passages or None, f.batch_size, f.max_len, f.rounds,
                          f.torch_threads, f.save_dir)


if __name__ == "__main__":
    app.run(main)
