r"""MLM warm start of the knowledge-augmented encoder at CPU scale: MiniLM, the mini corpus.

  python experiments/mlm.py --config=experiments/configs/mlm_mini.py --workdir=runs/mini/mlm
  python experiments/mlm.py --config=experiments/configs/mlm_mini.py:tiny --workdir=/tmp/t/mlm

Our stand-in for BERT's released MLM head (all-MiniLM-L6-v2 ships none; the paper's REALM starts
from BERT's trained head). Deviation from the paper: a stage of its own before REALM. It trains
the MLM head and MiniLM's top layers (``optim.trainable``), the lower layers frozen, on
``[CLS] masked sentence [SEP] context [SEP]`` with REALM's joint-input shapes (query 32,
context 160 wordpieces); the context is the rest of the sentence's block half the time, the
null document or a random block a quarter each, so the encoder learns to read a document that
holds the answer and to fall back when it does not. Settings chosen on the held-out blocks'
gate figures (no questions); see experiments/results/mini/README.md.
"""

from ml_collections import ConfigDict

from realm_jax.train import defaults


def get_config(arg: str | None = None) -> ConfigDict:
    c = defaults.mlm_config()

    c.num_train_steps = 150
    c.batch_size = 32
    c.log_every_steps = 10
    c.checkpoint_every_steps = 50
    c.eval_every_steps = 50
    c.eval_at_start = True

    c.model.bert = "minilm"
    c.model.num_hidden_layers = 6
    c.init.bert = "minilm"

    c.data.block_len = 160  # the corpus's blocks, as ICT and REALM pack them (one block cache)
    c.realm.query_len = 32  # = realm_mini.py's
    c.realm.max_masks = 8
    c.mlm.context_len = 160  # = realm_mini.py's cand_len: the same joint input as REALM's

    c.optim.learning_rate = 5e-4  # the head starts random: a larger step than REALM's
    c.optim.warmup_steps = 10
    c.optim.trainable = r"encoder/(mlm_head|bert/layer_[45])/"
    c.eval.num_batches = 8  # 256 held-out masked sentences for the gate
    if arg == "tiny":
        defaults.shrink_to_tiny(c)
        c.eval.num_batches = 2
    elif arg:
        raise ValueError(f"mlm_mini.py:{arg}: expected no argument or 'tiny'")
    return c
