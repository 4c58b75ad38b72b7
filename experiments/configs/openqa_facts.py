r"""A small open-QA model that answers from its corpus: the product demo and its tests.

  XLA_FLAGS= python experiments/finetune.py --config=experiments/configs/openqa_facts.py \
      --workdir=runs/facts
  realm-jax ask --workdir runs/facts "what is the capital of Amber?"
  realm-jax corpus replace --workdir runs/facts edit.jsonl     # change a fact, no training

Eight invented documents ("The capital of Amber is London.", realm_jax/data/corpus/facts) and a
question about each. The first 2 layers of all-MiniLM-L6-v2 for both the retriever and the
reader (pretrained attention learns to read the span in 30 steps; random 2-layer BERTs memorise
the cities instead after 300, measured: 46% EM, and an edited fact is then not read), a dense
retriever over all 8 blocks and a reader over its top 2. Time here (2 cores, one device):
30 steps, ~25 s in all; dev EM 100 on the 8 questions (they are also the training questions:
the point is reading the corpus, which the edit tests then change).
"""

from ml_collections import ConfigDict

from realm_jax.assets import FACTS_CORPUS, FACTS_QUESTIONS
from realm_jax.run import defaults


def get_config() -> ConfigDict:
    c = defaults.openqa_config()
    c.num_train_steps = 30
    c.batch_size = 8
    c.log_every_steps = 10
    c.checkpoint_every_steps = 30
    c.progress = False

    c.model.bert = c.init.bert = "minilm"
    c.model.num_hidden_layers = 2
    c.model.dropout = 0.0
    c.model.max_span_width = 4
    c.model.span_hidden_size = 16

    c.data.corpus = FACTS_CORPUS
    c.data.block_len = 24
    c.openqa.dataset = ""
    c.openqa.train_file = c.openqa.dev_file = FACTS_QUESTIONS
    c.openqa.question_len = 12
    c.openqa.retriever_beam = 8
    c.openqa.reader_beam = 2
    c.openqa.reader_len = 12 + 24

    c.optim.learning_rate = 4e-4
    c.optim.warmup_steps = 10
    c.index.emb_batch_size = 8
    c.eval.num_questions = 8
    c.eval.predict_batch_size = 8
    return c
