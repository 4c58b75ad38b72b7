r"""MLM warm start of the knowledge-augmented encoder at CPU scale: MiniLM, the mini corpus.

  python experiments/mlm.py --config=experiments/configs/mlm_mini.py --workdir=runs/mini/mlm
  python experiments/mlm.py --config=experiments/configs/mlm_mini.py:tiny --workdir=/tmp/t/mlm

Our stand-in for BERT's released MLM head (all-MiniLM-L6-v2 ships none; the paper's REALM starts
from BERT's trained head). Deviation from the paper: a stage of its own before REALM. It trains
the whole encoder (BERT + MLM head; the retriever is not part of this run) on
``[CLS] masked sentence [SEP] context [SEP]`` with REALM's joint-input shapes (query 32,
context 160 wordpieces). Half the contexts are another block that holds the masked span
(``mlm.evidence_percent``; REALM's retrieved documents at best), a quarter the rest of the
sentence's own block and a quarter the null document, so the encoder learns to read a document
that holds the answer and to fall back when there is none. The head, which starts random,
takes 10x the layers' step (``optim.lr_scale``).

Settings chosen on the held-out blocks' gate figures (no questions): see
experiments/results/mini/DEV_LOG.md (attempt C: 60 steps give held-out MLM accuracy 2.0% and
oracle utility 0.16 nat, short of the 15% / 0.5 nat gate; 6.6 s a step on 2 cores).
"""

from ml_collections import ConfigDict

from realm_jax.train import defaults


def get_config(arg: str | None = None) -> ConfigDict:
    c = defaults.mlm_config()

    c.num_train_steps = 60
    c.batch_size = 32
    c.log_every_steps = 10
    c.checkpoint_every_steps = 30
    c.eval_every_steps = 30
    c.eval_at_start = True

    c.model.bert = "minilm"
    c.model.num_hidden_layers = 6
    c.init.bert = "minilm"

    c.data.block_len = 160  # the corpus's blocks, as ICT and REALM pack them (one block cache)
    c.realm.query_len = 32  # = realm_mini.py's
    c.realm.max_masks = 8
    c.mlm.context_len = 160  # = realm_mini.py's cand_len: the same joint input as REALM's
    c.mlm.evidence_percent, c.mlm.null_percent, c.mlm.random_percent = 50, 25, 0

    c.optim.learning_rate = 5e-4
    c.optim.warmup_steps = 10
    c.optim.trainable = "encoder/"  # all of it
    c.optim.lr_scaled, c.optim.lr_scale = "encoder/mlm_head/", 10.0  # the random head: 5e-3
    c.eval.num_batches = 8  # 256 held-out masked sentences for the gate
    if arg == "tiny":
        defaults.shrink_to_tiny(c)
        c.eval.num_batches = 2
    elif arg:
        raise ValueError(f"mlm_mini.py:{arg}: expected no argument or 'tiny'")
    return c
