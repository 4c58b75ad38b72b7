r"""ICT at CPU scale: all-MiniLM-L6-v2 as both towers, the 5,655-passage mini corpus.

  python experiments/ict.py --config=experiments/configs/ict_mini.py --workdir=runs/mini/ict
  python experiments/ict.py --config=experiments/configs/ict_mini.py:tiny --workdir=/tmp/t/ict

Time here (2 CPU cores shared with other jobs, load 3-4.5, XLA_FLAGS unset): 2.6-5.9 s a step,
so 60 steps ~3-6 min, plus ~3 min for the final index of the 6,967 blocks (measured: 24 steps,
in-batch accuracy 68% -> 78% on held-out batches); packing the corpus once takes ~10 s.
``:tiny`` is the smoke test (2-layer 32-wide random BERT, 40 passages, 4 steps, ~25 s).
What was scaled and why (docs/DESIGN.md 5): nothing in the towers. MiniLM keeps all 6 layers: the
Embedder reads BERT's pooled [CLS], and MiniLM's [CLS] only becomes input-specific in its last
layers (mean cosine between different inputs: 0.9999 with 3-5 layers, 0.63 with 6), so a cut
tower embeds everything alike and ICT cannot start (loss stayed at ln 32 for 40 steps with 3).
Blocks of 160 wordpieces hold a ~100-word NQ passage with its title (SQuAD paragraphs split in
two); queries are one sentence of at most 32 wordpieces; batch 32 gives 31 in-batch negatives
at ~6k tokens a step.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config(arg: str | None = None) -> ConfigDict:
    c = defaults.ict_config()

    c.num_train_steps = 60
    c.batch_size = 32
    c.log_every_steps = 10
    c.checkpoint_every_steps = 20
    c.eval_every_steps = 30

    c.model.bert = "minilm"
    c.model.num_hidden_layers = 6  # all: with fewer, MiniLM's [CLS] is the same for any input
    c.init.bert = "minilm"

    c.data.block_len = 160  # ~100-word passages + title fit in one block
    c.ict.query_len = 32
    c.ict.block_len = 160

    c.optim.learning_rate = 1e-4  # ORQA's
    c.optim.warmup_steps = 6  # BERT's rule would warm up for all 60 steps

    c.index.emb_batch_size = 128
    c.eval.num_batches = 4
    if arg == "tiny":
        defaults.shrink_to_tiny(c)
    elif arg:
        raise ValueError(f"ict_mini.py:{arg}: expected no argument or 'tiny'")
    return c
