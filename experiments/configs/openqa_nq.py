r"""Open-QA fine-tuning on Natural Questions (open) at the paper's scale, from REALM.

  python experiments/finetune.py --config=experiments/configs/openqa_nq.py \
      --workdir=runs/openqa_nq --config.init.pretrain_workdir=runs/realm_ccnews \
      --config.openqa.train_file=/data/resplit/NaturalQuestions.resplit.train.jsonl \
      --config.openqa.dev_file=/data/resplit/NaturalQuestions.resplit.dev.jsonl \
      --config.data.corpus=/data/enwiki-20181220/blocks.tfr \
      --config.data.titles=/data/enwiki-20181220/titles.tfr
  python experiments/evaluate.py --checkpoint=runs/openqa_nq --dataset=nq --split=test

Hardware (REALM 4.3, as ORQA's README): one machine with a 12 GB GPU and 64 GB of RAM; the
13.4M x 128 index is held on the device in bfloat16 (3.4 GB). ORQA's recipe: one question per
step, retriever beam 5000, reader over the top 5, lr 1e-5. NQ's step count is not in the
released code (only WebQuestions': 20 epochs); 2 epochs here is our assumption (158k steps).
Estimate, not a measurement: ~0.15 s a step (reader 5 x 320 tokens, has_answer over 5000 blocks
on the host), ~7 h. ORQA's NQ train/dev resplit (79,168 / 8,757) is not shipped: pass the files.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.openqa_config()

    c.num_train_steps = 2 * 79_168  # 2 epochs at one question a step (assumption, see above)
    c.batch_size = 1  # ORQA: one question per step (a multiple of the device count: 1 GPU)
    c.log_every_steps = 100
    c.checkpoint_every_steps = 1000  # ORQA's save_checkpoints_steps
    c.eval_every_steps = 5000
    c.progress = False

    c.model.bert = "base"
    c.model.dtype = "bfloat16"
    c.init.bert = "bert-base-uncased"  # used only for parts no pretrained run provides
    # c.init.pretrain_workdir (REALM) or c.init.ict_workdir (ORQA baseline): command line.

    c.data.corpus = "enwiki-20181220/blocks.tfr"
    c.data.titles = "enwiki-20181220/titles.tfr"
    c.data.block_len = 288

    c.optim.learning_rate = 1e-5
    c.openqa.dataset = ""  # NQ train/dev come from files; the shipped "nq" is its test set
    c.openqa.question_len = 64
    c.openqa.retriever_beam = 5000
    c.openqa.reader_beam = 5
    c.openqa.reader_len = 288 + 32  # a block plus the question
    c.model.max_span_width = 10
    c.model.span_hidden_size = 256

    c.index.searcher = "scann"
    c.index.emb_dtype = "bfloat16"
    c.index.emb_batch_size = 1024
    c.eval.num_questions = 1000
    c.eval.predict_batch_size = 16
    return c
