r"""ICT warm start at the paper's scale: ORQA's Inverse Cloze Task on Wikipedia, BERT-base.

  python experiments/ict.py --config=experiments/configs/ict_wiki.py --workdir=runs/ict_wiki \
      --config.init.bert=/data/bert-base-uncased \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr

Hardware: ORQA trained ICT on Cloud TPU ("we recommend using TPUs ... due to the effectiveness of
large batch sizes"); the core count is not given. Our estimate, not a measurement: 100k steps x
4096 x (64 + 288) tokens x 6 x 110M params ~ 1e20 FLOPs, ~1.5 days on a v3-32 at 40% utilisation.
Not run here. Needs: BERT-base uncased in HF format (``init.bert``) and ORQA's 13,353,718 blocks
(gs://orqa-data/enwiki-20181220); packing them into the block store reads ~13 GB of text once.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.ict_config()

    # Run: ORQA's ICT recipe.
    c.num_train_steps = 100_000
    c.batch_size = 4096  # in-batch negatives: every block of the global batch (gathered)
    c.log_every_steps = 100
    c.checkpoint_every_steps = 1000  # ORQA's save_checkpoints_steps
    c.eval_every_steps = 5000
    c.progress = False  # TPU pods log to files; ETA lines still go to the log

    # Model: BERT-base uncased, one tower for questions and blocks, 128-d projection.
    c.model.bert = "base"
    c.model.dtype = "bfloat16"
    c.init.bert = "bert-base-uncased"  # a directory with config.json + model.safetensors

    # Data: ORQA's preprocessed Wikipedia (2018-12-20), one block per record.
    c.data.corpus = "enwiki-20181220/blocks.tfr"
    c.data.titles = "enwiki-20181220/titles.tfr"
    c.data.block_len = 288

    c.optim.learning_rate = 1e-4  # warmup: BERT's min(10000, max(100, steps / 10)) = 10000
    c.ict.query_len = 64
    c.ict.block_len = 288
    c.ict.remove_prob = 0.9

    # The final index over 13.4M blocks (REALM's first index): ScaNN, bf16 (3.4 GB).
    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 4096
    c.eval.num_batches = 8
    return c
