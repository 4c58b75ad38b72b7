r"""Open-QA fine-tuning on CuratedTrec at the paper's scale, from REALM (answers are regexes).

  python experiments/finetune.py --config=experiments/configs/openqa_ct.py \
      --workdir=runs/openqa_ct --config.init.pretrain_workdir=runs/realm_ccnews \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr
  python experiments/evaluate.py --checkpoint=runs/openqa_ct --dataset=ct --split=test

Hardware (REALM 4.3): one 12 GB GPU, 64 GB of RAM. ORQA released no CuratedTrec recipe (its
regexes need on-the-fly matching, which data.pretraining does on the host); we use WebQuestions'
20 epochs of one question a step (assumption). Estimate, not a measurement: ~0.2 s a step (regex
search over 5000 blocks per question), ~1.5 h. Resplit 1,353 / 133 / 694 ships with realm_jax.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.openqa_config()

    c.num_train_steps = 1353 * 20  # 20 epochs, as ORQA's WebQuestions recipe
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
    c.openqa.dataset = "ct"
    c.openqa.regex = True  # gold spans and EM by regex match (evaluation.regex_match)
    c.openqa.question_len = 64
    c.openqa.retriever_beam = 5000
    c.openqa.reader_beam = 5
    c.openqa.reader_len = 288 + 32

    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 1024
    c.eval.num_questions = 133  # all of dev
    c.eval.predict_batch_size = 16
    return c
