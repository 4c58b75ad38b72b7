r"""Open-QA fine-tuning at CPU scale on mini NQ (or mini SQuAD), ORQA's recipe.

  python experiments/finetune.py --config=experiments/configs/openqa_mini.py \
      --workdir=runs/mini/openqa_nq --config.init.pretrain_workdir=runs/mini/realm
  python experiments/evaluate.py --checkpoint=runs/mini/openqa_nq --dataset=mini_nq --split=test

Arguments (comma-separated after the file name): ``squad`` (mini SQuAD instead of mini NQ),
``bm25`` (BM25's beam with the same reader: the sparse baseline), ``tiny`` (smoke test).
Baselines are init overrides: ORQA = ``--config.init.ict_workdir=runs/mini/ict`` instead of the
REALM run; no retrieval pre-training = neither.
Time here (2 cores, nothing else running; measured 2026-11-23): 3.5-4 s a step, so 50 steps
~3.5 min; the frozen index is reused from the init run's final one (else embedding takes ~2 min);
the final dev evaluation of 100 questions ~10 s (~10 questions/s).
What was scaled and why (docs/DESIGN.md 5): retriever beam 64 of 6,967 blocks (paper 5000 of 13M),
reader over the top 4 (paper 5) at 32 + 160 tokens, 8 questions a step (ORQA: 1), so a step is
~6k reader tokens; dev is 10% of train (by question hash); test is never touched in training.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config(arg: str | None = None) -> ConfigDict:
    c = defaults.openqa_config()
    args = set(arg.split(",")) if arg else set()
    if args - {"squad", "bm25", "tiny"}:
        raise ValueError(f"openqa_mini.py:{arg}: expected squad, bm25 and/or tiny")

    c.num_train_steps = 50
    c.batch_size = 8
    c.log_every_steps = 10
    c.checkpoint_every_steps = 25
    c.eval_every_steps = 0  # at the end

    c.model.bert = "minilm"
    c.model.num_hidden_layers = 6  # all (ict_mini.py says why)
    c.init.bert = "minilm"  # whatever no pretrained run provides (e.g. the reader for ORQA)

    c.data.block_len = 160
    c.openqa.dataset = "mini_squad" if "squad" in args else "mini_nq"
    c.openqa.retriever = "bm25" if "bm25" in args else "dense"
    c.openqa.question_len = 32
    c.openqa.retriever_beam = 64
    c.openqa.reader_beam = 4
    c.openqa.reader_len = 32 + 160

    c.optim.learning_rate = 1e-4  # paper 1e-5 over ~100k steps; 50 need larger ones (the span
    c.optim.warmup_steps = 5  # head starts random)

    c.index.emb_batch_size = 128
    c.eval.num_questions = 100
    c.eval.predict_batch_size = 16
    if "tiny" in args:
        defaults.shrink_to_tiny(c)
        if "squad" in args:
            c.openqa.dataset, c.data.gold_questions = "mini_squad", "mini_squad:train"
        c.openqa.retriever = "bm25" if "bm25" in args else "dense"
    return c
