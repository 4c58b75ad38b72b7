r"""REALM pre-training at the paper's scale with X = Z = Wikipedia (REALM-Wiki, Table 1).

  python experiments/pretrain.py --config=experiments/configs/realm_wiki.py \
      --workdir=runs/realm_wiki --config.init.ict_workdir=runs/ict_wiki \
      --config.init.bert=/data/bert-base-uncased \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr

Hardware (REALM, section 4.3): 64 Google Cloud TPUs train for 200k steps at batch 512; the
document index is re-embedded on 16 more TPUs, about once per 500 steps. Our estimate, not a
measurement: ~3.7e20 FLOPs (encoder 512 x 8 x 384 tokens, retriever 512 x (96 + 8 x 288)),
~3 days on a v3-64 slice at 40% utilisation. Not run here. The salient spans of 13.4M blocks take
spaCy about 3.7 CPU-days (~24 ms a block): annotate once, in parallel, before launching.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.realm_config()

    c.num_train_steps = 200_000
    c.batch_size = 512
    c.log_every_steps = 100
    c.checkpoint_every_steps = 500  # each checkpoint is a refresh: ~500 steps per index
    c.keep_checkpoints = 5  # the refresher and the trainer read them while the next are written
    c.eval_every_steps = 5000
    c.progress = False

    c.model.bert = "base"
    c.model.dtype = "bfloat16"
    c.init.bert = "bert-base-uncased"  # the knowledge-augmented encoder starts from BERT
    # c.init.ict_workdir: the retriever starts from ICT (set on the command line).

    c.data.corpus = "enwiki-20181220/blocks.tfr"
    c.data.titles = "enwiki-20181220/titles.tfr"
    c.data.block_len = 288

    c.optim.learning_rate = 3e-5  # BERT's Adam; warmup 10000
    c.realm.query_len = 96
    c.realm.cand_len = 288
    c.realm.num_candidates = 8  # 7 retrieved + the null document
    c.realm.max_masks = 10
    c.realm.masker = "salient"

    # Asynchronous refresh in its own process (the paper's separate index-builder job).
    c.index.mode = "async"
    c.index.refresher = "process"
    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 4096
    c.index.keep = 3
    c.eval.recall_questions = "nq:test"  # zero-shot recall@5 on NQ-open (the only NQ shipped)
    c.eval.num_questions = 1000
    return c
