"""Open-QA fine-tuning (ORQA; REALM section 3.4): a frozen index of Z, a trainable query tower,
and a span reader over the retrieved beam.

The loss is ORQA's: the retriever's and the reader's marginal log-losses over the blocks and spans
that hold an answer (``losses.openqa_loss``). The index is built once from the starting document
tower (or copied from the run it starts from) and never refreshed; dev evaluation answers the dev
questions end to end (``openqa/answerer.Answerer``) and scores exact match.

Batch keys: question_ids, question_mask [B, Lq]; beam_emb [B, beam, D]; beam_valid, beam_correct
[B, beam]; reader_ids, reader_mask, reader_type_ids, reader_block_mask [B, R, Lr]; gold_starts,
gold_ends [B, R, num_answers] (-1 pads).
"""

from __future__ import annotations

import jax
from ml_collections import ConfigDict

from realm_jax import losses
from realm_jax.data import input_pipeline as ip
from realm_jax.errors import ConfigError
from realm_jax.index.live import SyncIndex
from realm_jax.index.published import source_index
from realm_jax.models.realm import OpenQAModel
from realm_jax.openqa.answerer import Answerer, openqa_data, score_predictions
from realm_jax.run.config import resolve_config
from realm_jax.run.files import RunDir
from realm_jax.run.model_setup import create_state
from realm_jax.train.init import retriever_source, setup_stage
from realm_jax.train.loop import TrainLoop
from realm_jax.train.steps import make_train_step
from realm_jax.utils.devices import AXIS, shard

METRICS = {
    "loss": ("loss_sum", "num_examples"),
    "retriever_loss": ("retriever_loss_sum", "num_examples"),
    "reader_loss": ("reader_loss_sum", "num_examples"),
    "exact_match": ("exact_match_sum", "num_examples"),
    "reader_oracle": ("reader_oracle_sum", "num_examples"),
    "retrieval_recall": ("retrieval_recall_sum", "num_examples"),
}


def loss_fn(model: OpenQAModel):
    """(params, batch, rngs, deterministic) -> ORQA's retriever + reader loss and sums."""

    def loss(params, batch, rngs, deterministic):
        beam_logits, reader_logits, span_mask, starts, ends = model.apply(
            params,
            *(batch[k] for k in ("question_ids", "question_mask", "beam_emb", "reader_ids")),
            *(batch[k] for k in ("reader_mask", "reader_type_ids", "reader_block_mask")),
            deterministic=deterministic,
            rngs=rngs,
        )
        gold = (batch["gold_starts"], batch["gold_ends"])
        reader_correct = losses.correct_spans(starts, ends, *gold)  # [B, R, S]
        return losses.openqa_loss(
            beam_logits,
            batch["beam_correct"],
            batch["beam_valid"],
            reader_logits,
            span_mask,
            reader_correct,
            axis_name=AXIS,
        )

    return loss


def train_step(model: OpenQAModel, donate: bool = True):
    """The pmapped open-QA fine-tuning step (ORQA's retriever + reader marginal losses)."""
    return make_train_step(loss_fn(model), METRICS, donate)


def questions(config: ConfigDict, split: str) -> list[dict]:
    """The split's questions (with ``openqa.only_gold_in_corpus``: those whose gold passage is in
    the corpus)."""
    rows = ip.openqa_questions(config, split)
    if config.openqa.only_gold_in_corpus:
        rows = ip.keep_answerable(rows, {i for i, _, _ in ip.corpus_documents(config.data)})
    return rows


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """ORQA fine-tuning: a frozen index of Z, a trainable query tower, a reader over the beam."""
    config = resolve_config(config, workdir, "openqa")
    tokenizer, store, model, params, spec = setup_stage(config, workdir)
    o = config.openqa
    snapshot = None
    if o.retriever == "dense":  # frozen: index 0, from the starting doc tower, even on resume
        frozen = SyncIndex(RunDir(workdir).index, spec, store, config.index,
                           config.data.block_len, config.progress)
        seed = source_index(retriever_source(config), config.data.block_len,
                            config.data.blocks_dir)
        snapshot = frozen.start(0, params, seed)
    data = openqa_data(config, store, tokenizer, spec, snapshot)
    train_rows, dev_rows = questions(config, "train"), questions(config, "dev")
    if not train_rows:
        raise ConfigError("no training questions (check openqa.dataset / only_gold_in_corpus)")
    if jax.process_index() == 0:
        print(f"openqa: {len(train_rows)} train / {len(dev_rows)} dev questions", flush=True)
    dev_rows = dev_rows[: config.eval.num_questions]
    answerer = Answerer(model, data)

    def evaluate(step: int, params: dict) -> dict:
        if not dev_rows:
            return {}
        predictions = answerer(params, [row["question"] for row in dev_rows],
                               config.eval.predict_batch_size)
        return score_predictions(dev_rows, predictions, o.regex)

    p_train_step = train_step(model)
    state = create_state(config, params)
    del params  # the host copy: the loop's replicated state holds them from here
    with TrainLoop(config, workdir, "openqa", state, spec) as loop:
        loop.evaluate_at_start(evaluate)
        for step in loop.steps():
            batch = data.train_batch(train_rows, step, loop.params)
            state, metrics = p_train_step(loop.state, shard(batch), loop.rng)
            loop.record(state, metrics)
            loop.evaluate_if_due(evaluate)
        return loop.final_metrics(evaluate)
