r"""Open-QA fine-tuning on WebQuestions at the paper's scale, from REALM (ORQA's recipe).

  python experiments/finetune.py --config=experiments/configs/openqa_wq.py \
      --workdir=runs/openqa_wq --config.init.pretrain_workdir=runs/realm_ccnews \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr
  python experiments/evaluate.py --checkpoint=runs/openqa_wq --dataset=wq --split=test

Hardware (REALM 4.3, as ORQA's README): one 12 GB GPU, 64 GB of RAM. Steps as ORQA's README gives
them for WebQuestions: 3417 x 20 (20 epochs at one question a step). Estimate, not a measurement:
~0.15 s a step, ~3 h. The train / dev / test resplit (3,417 / 361 / 2,032) ships with realm_jax.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.openqa_config()

    c.num_train_steps = 3417 * 20  # ORQA README: --num_train_steps=$(( 3417 * 20 ))
    c.batch_size = 1
    c.log_every_steps = 100
    c.checkpoint_every_steps = 1000
    c.eval_every_steps = 5000
    c.progress = False

    c.model.bert = "base"
    c.model.dtype = "bfloat16"
    c.init.bert = "bert-base-uncased"

    c.data.corpus = "enwiki-20181220/blocks.tfr"
    c.data.titles = "enwiki-20181220/titles.tfr"
    c.data.block_len = 288

    c.optim.learning_rate = 1e-5
    c.openqa.dataset = "wq"
    c.openqa.question_len = 64
    c.openqa.retriever_beam = 5000
    c.openqa.reader_beam = 5
    c.openqa.reader_len = 288 + 32

    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 1024
    c.eval.num_questions = 361  # all of dev
    c.eval.predict_batch_size = 16
    return c
