"""Open-QA end to end: retrieve a beam, read its head, decode the best span back to text, score.

Shared by fine-tuning (its batches and dev evaluation), ``experiments/predict.py`` and
``experiments/evaluate.py``. A retriever maps questions to block ids: ``DenseRetriever`` embeds
them with the model's current query tower and searches the frozen index; ``BM25Retriever`` is the
sparse baseline (its beam carries zero embeddings, so retrieval logits are 0 and the reader alone
ranks the spans).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from realm_jax.data.blocks import BlockStore, bert_inputs
from realm_jax.data.input_pipeline import process_rows, question_indices
from realm_jax.data.packing import continuation_table
from realm_jax.data.pretraining import openqa_batch
from realm_jax.data.tokenization import Tokenizer, shared_tokenizer
from realm_jax.errors import ConfigError
from realm_jax.evaluation import has_answer, is_correct
from realm_jax.index.bm25 import BM25Searcher
from realm_jax.index.corpus_edit import load_serving
from realm_jax.index.live import Snapshot
from realm_jax.index.searcher import Searcher
from realm_jax.models.realm import EmbedderSpec, OpenQAModel, QueryEncoder, query_tower
from realm_jax.run.files import read_run_config
from realm_jax.run.model_setup import realm_config, restore_run_params, stage_model

NUM_EVIDENCE = 5  # blocks listed per prediction (recall@5)


class QuestionRetriever(Protocol):
    def __call__(
        self, questions: Sequence[str], query_ids: np.ndarray, params: dict, k: int
    ) -> np.ndarray:
        """-> block ids [Q, k], best first (-1: none)."""
        ...


class DenseRetriever:
    """Embed_input(question) with the current query tower, MIPS over the frozen index."""

    def __init__(self, encoder: QueryEncoder, searcher: Searcher):
        self.encoder, self.searcher = encoder, searcher

    def __call__(self, questions, query_ids, params, k):
        emb = self.encoder(query_tower(params), query_ids)
        return self.searcher.search(emb, min(k, self.searcher.num_blocks))[1]


class BM25Retriever:
    """BM25 over the block texts (``index/bm25.py``); ignores the model's params."""

    def __init__(self, bm25):
        self.bm25 = bm25

    def __call__(self, questions, query_ids, params, k):
        return self.bm25.search_text(questions, min(k, self.bm25.num_blocks))[1]


def question_ids(store: BlockStore, tokenizer: Tokenizer, questions, length: int) -> np.ndarray:
    """``[CLS] question [SEP]`` ids [Q, length], as openqa_batch encodes them."""
    tokens = tokenizer.tokenize(list(questions))
    return bert_inputs(tokens, None, length, store.cls_id, store.sep_id)["input_ids"]


class OpenQAData:
    """Questions -> retrieval -> the open-QA step's batch (``data.pretraining.openqa_batch``)."""

    def __init__(
        self, store: BlockStore, tokenizer: Tokenizer, config: ConfigDict,
        retriever: QuestionRetriever, block_emb: np.ndarray,
    ):
        self.store, self.tokenizer, self.config = store, tokenizer, config
        self.retriever, self.block_emb = retriever, block_emb
        self.is_continuation = continuation_table(tokenizer)

    def batch(self, rows: Sequence[dict], params: dict, beam: int) -> tuple[dict, np.ndarray]:
        """The batch of ``rows`` ({question, answers}) and the retrieved ids [B, beam]."""
        o = self.config.openqa
        questions = [r["question"] for r in rows]
        ids = question_ids(self.store, self.tokenizer, questions, o.question_len)
        block_ids = np.asarray(self.retriever(questions, ids, params, beam))
        batch = openqa_batch(
            self.store, self.tokenizer, questions, [r["answers"] for r in rows], block_ids,
            self.block_emb, min(o.reader_beam, block_ids.shape[1]), o.question_len, o.reader_len,
            o.max_gold_spans, o.regex, self.is_continuation,
        )
        return batch, block_ids

    def train_batch(self, rows: Sequence[dict], step: int, params: dict) -> dict:
        """This process's share of step ``step``'s batch, over shuffled epochs of ``rows``."""
        c = self.config
        idx = question_indices(len(rows), step, c.batch_size, c.seed)[process_rows(c.batch_size)]
        return self.batch([rows[i] for i in idx], params, c.openqa.retriever_beam)[0]


def body_offsets(store: BlockStore, tokenizer: Tokenizer, block: int) -> np.ndarray | None:
    """Character spans [n, 2] of block ``block``'s body wordpieces in its text (None: mismatch)."""
    text, spans = store.text(block), store.sentence_char_spans(block)
    ids, offsets = tokenizer.tokenize_with_offsets([text[s:e] for s, e in spans])
    flat = [i for row in ids for i in row]
    if flat != store.token_ids(block).tolist():
        return None  # a sentence was cut when packed: fall back to the wordpieces
    return np.concatenate(
        [
            np.asarray(o, np.int64).reshape(-1, 2) + s
            for o, (s, _) in zip(offsets, spans, strict=True)
        ]
    )


def word_span(token_ids: np.ndarray, start: int, end: int, is_continuation: np.ndarray):
    """``(start, end)`` widened to whole words (a span never starts or ends inside one)."""
    while start > 0 and is_continuation[token_ids[start]]:
        start -= 1
    while end + 1 < len(token_ids) and is_continuation[token_ids[end + 1]]:
        end += 1
    return start, end


def span_chars(
    store: BlockStore, tokenizer: Tokenizer, block: int, start: int, end: int,
    is_continuation: np.ndarray | None = None,
) -> tuple[str, tuple[int, int] | None]:
    """Text of body wordpieces ``start..end`` (inclusive) of ``block``, in its original casing,
    and its character span in ``store.text(block)`` (None when the text cannot be aligned).

    As ORQA's answers, the span covers whole words: it is widened over ``##`` pieces first.
    """
    ids = store.token_ids(block) if block >= 0 else np.zeros(0, np.int32)
    if block < 0 or not 0 <= start <= end < len(ids):
        return "", None
    if is_continuation is not None:
        start, end = word_span(ids, start, end, is_continuation)
    offsets = body_offsets(store, tokenizer, block)
    if offsets is None:
        return tokenizer.decode(ids[start : end + 1]), None
    chars = (int(offsets[start, 0]), int(offsets[end, 1]))
    return store.text(block)[chars[0] : chars[1]], chars


def _softmax(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if not valid.any():  # nothing retrieved (e.g. no BM25 term matched): no probability mass
        return np.zeros(x.shape, np.float64)
    x = np.where(valid, x.astype(np.float64), -np.inf)
    e = np.exp(x - x.max())
    return e / e.sum()


def make_openqa_predict(model: OpenQAModel) -> Callable:
    """Jitted ``predict(params, batch) -> dict`` of the best span per question (ORQA's argmax)."""

    @jax.jit
    def predict(params, batch):
        beam_logits, reader_logits, _, starts, ends = model.apply(
            params,
            *(batch[k] for k in ("question_ids", "question_mask", "beam_emb", "reader_ids")),
            *(batch[k] for k in ("reader_mask", "reader_type_ids", "reader_block_mask")),
        )
        b, _, num_spans = reader_logits.shape
        flat = reader_logits.reshape(b, -1)  # [b, reader_beam * S]
        best = jnp.argmax(flat, -1)  # ORQA's (argmax of row maxima, of column maxima) save ties
        span = best % num_spans
        return {
            "block_index": best // num_spans,  # [b] into the reader beam
            "start": starts[span],  # [b] token positions in the reader input, inclusive
            "end": ends[span],
            "score": jnp.max(flat, -1),
            # p(best block, best span | x) over the reader beam's valid spans (invalid spans hold
            # finfo.min logits: probability 0).
            "probability": jnp.max(jax.nn.softmax(flat.astype(jnp.float32), -1), -1),
            "retriever_logits": beam_logits,  # [b, beam]
        }

    return predict


class Answerer:
    """Questions -> predictions: the best span, its score, and the top evidence blocks."""

    def __init__(self, model: OpenQAModel, data: OpenQAData):
        self.data = data
        self.predict = make_openqa_predict(model)
        self.about: dict = {}  # what load_openqa_run loaded: step, corpus version, index

    def __call__(self, params: dict, questions: Sequence[str], batch_size: int) -> list[dict]:
        """One prediction record per question, in order (batches padded to one shape)."""
        data, out = self.data, []
        o = data.config.openqa  # the retriever beam: evidence probabilities are its p(z|x)
        beam = max(o.retriever_beam, o.reader_beam, NUM_EVIDENCE)
        q_len = data.config.openqa.question_len
        tokens = data.tokenizer.tokenize(list(questions))
        for start in range(0, len(questions), batch_size):
            chunk = list(questions[start : start + batch_size])
            padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
            rows = [{"question": q, "answers": []} for q in padded]
            batch, block_ids = data.batch(rows, params, beam)
            pred = {k: np.asarray(v) for k, v in self.predict(params, batch).items()}
            for row, question in enumerate(chunk):
                body_start = 2 + min(len(tokens[start + row]), q_len - 2)
                block = int(block_ids[row, pred["block_index"][row]])
                valid = block_ids[row] >= 0
                probs = _softmax(pred["retriever_logits"][row], valid)
                answer, chars = span_chars(
                    data.store, data.tokenizer, block, int(pred["start"][row]) - body_start,
                    int(pred["end"][row]) - body_start, data.is_continuation,
                )
                evidence = [
                    {"block": int(b), "title": data.store.title(int(b)),
                     "text": data.store.text(int(b)), "probability": float(p)}
                    for b, p in zip(block_ids[row], probs, strict=True) if b >= 0
                ][:NUM_EVIDENCE]
                out.append({
                    "question": question, "prediction": answer,
                    "probability": float(pred["probability"][row]),
                    "score": float(pred["score"][row]), "evidence": evidence,
                    "answer_block": block, "answer_chars": chars,
                })
        return out


def score_predictions(
    rows: Sequence[dict], predictions: Sequence[dict], is_regex: bool = False
) -> dict[str, float]:
    """EM (as evaluate_predictions.py counts it) and recall@5 of the listed evidence over the
    rows: the means of ``per_question_scores``' ``correct`` and ``gold_in_top5``, in percent."""
    records = per_question_scores(rows, predictions, is_regex)
    percent = lambda key: 100.0 * float(np.mean([r[key] for r in records])) if records else 0.0
    return {"exact_match": percent("correct"), "recall_at_5": percent("gold_in_top5"),
            "n": len(records)}


def per_question_scores(
    rows: Sequence[dict], predictions: Sequence[dict], is_regex: bool = False
) -> list[dict]:
    """One record per question, ``{question, answers, prediction, correct, gold_in_top5}``, in
    the order questions first appear in ``rows``; ``score_predictions`` averages them.

    Keyed by question text as ORQA's ``evaluate_predictions_impl`` is (a repeated question is one
    record with its last answers); a question without a prediction is wrong, with prediction
    None.
    """
    references = {r["question"]: r["answers"] for r in rows}
    by_question = {p["question"]: p for p in predictions}
    out = []
    for question, answers in references.items():
        pred = by_question.get(question)
        evidence = pred["evidence"][:NUM_EVIDENCE] if pred else []
        out.append({
            "question": question, "answers": list(answers),
            "prediction": pred["prediction"] if pred else None,
            "correct": pred is not None and is_correct(pred["prediction"], answers, is_regex),
            "gold_in_top5": any(has_answer(e["text"], answers, is_regex) for e in evidence),
        })
    return out


def openqa_data(
    config: ConfigDict, store: BlockStore, tokenizer: Tokenizer, spec: EmbedderSpec,
    snapshot: Snapshot | None,
) -> OpenQAData:
    """Retrieval (dense over the frozen index, or BM25) and batching for an open-QA config."""
    kind = config.openqa.retriever
    if kind == "dense":
        retriever = DenseRetriever(QueryEncoder(spec), snapshot.searcher)
        block_emb = snapshot.block_emb
    elif kind == "bm25":
        retriever = BM25Retriever(BM25Searcher.from_store(store))
        # Zero embeddings: retrieval logits are 0, so the reader alone ranks BM25's beam.
        shape = (len(store), spec.proj_size)
        block_emb = np.broadcast_to(np.zeros(spec.proj_size, np.float32), shape)
    else:
        raise ConfigError(f"openqa.retriever={kind!r}: expected 'dense' or 'bm25'")
    return OpenQAData(store, tokenizer, config, retriever, block_emb)


def load_openqa_run(workdir: str) -> tuple[ConfigDict, dict, Answerer]:
    """A fine-tuned run's config, latest params and answerer (``openqa/predict.py`` and the API
    answer with it)."""
    if read_run_config(workdir).stage != "openqa":
        raise ConfigError(
            f"{workdir} is a {read_run_config(workdir).stage} run, not an open-QA one"
        )
    config, params, step = restore_run_params(workdir)
    params = jax.device_put(params)  # once, not with every prediction batch
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    snapshot = None
    if config.openqa.retriever == "dense":  # the run's index, or its newest corpus version
        serving = load_serving(workdir, config)
        store = serving.view
        snapshot = Snapshot(serving.meta["index"]["step"], serving.searcher, serving.block_emb,
                            None)
        about = {"corpus_version": serving.version, "live_blocks": store.num_live,
                 "index": serving.searcher.main.kind, "index_step": snapshot.step,
                 "added_rows": len(serving.searcher.extra)}
    else:
        store = BlockStore(config.data.blocks_dir)
        about = {"corpus_version": 0, "live_blocks": len(store), "index": "bm25",
                 "index_step": None, "added_rows": 0}
    data = openqa_data(config, store, shared_tokenizer(), spec, snapshot)
    answerer = Answerer(stage_model(config), data)
    answerer.about = {"step": int(step), **about}
    return config, params, answerer
