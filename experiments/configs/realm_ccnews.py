r"""REALM pre-training at the paper's scale with X = CC-News, Z = Wikipedia (REALM-News, Table 1).

  python experiments/pretrain.py --config=experiments/configs/realm_ccnews.py \
      --workdir=runs/realm_ccnews --config.init.ict_workdir=runs/ict_wiki \
      --config.init.bert=/data/bert-base-uncased \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr \
      --config.data.target_corpus=/data/cc_news.jsonl

Same recipe and hardware as ``realm_wiki.py`` (64 TPUs, 200k steps, batch 512, 16 TPUs for the
index); only the pre-training corpus X differs: masked sentences come from CC-News while
retrieval stays over Wikipedia. CC-News is not shipped; it is a jsonl of {title, text} packed into
blocks (with salient spans) like Z. Not run here.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults

# The same experiment as realm_wiki.py apart from the corpus the queries come from.
_WIKI = "enwiki-20181220"


def get_config() -> ConfigDict:
    c = defaults.realm_config()

    c.num_train_steps = 200_000
    c.batch_size = 512
    c.log_every_steps = 100
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 5
    c.eval_every_steps = 5000
    c.progress = False

    c.model.bert = "base"
    c.model.dtype = "bfloat16"
    c.init.bert = "bert-base-uncased"

    c.data.corpus = f"{_WIKI}/blocks.tfr"  # Z: the knowledge corpus
    c.data.titles = f"{_WIKI}/titles.tfr"
    c.data.block_len = 288
    # c.data.target_corpus: X, CC-News as jsonl {title, text} (command line; not shipped).

    c.optim.learning_rate = 3e-5
    c.realm.query_len = 96
    c.realm.cand_len = 288
    c.realm.num_candidates = 8
    c.realm.max_masks = 10

    c.index.mode = "async"
    c.index.refresher = "process"
    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 4096
    c.eval.recall_questions = "nq:test"
    c.eval.num_questions = 1000
    return c
