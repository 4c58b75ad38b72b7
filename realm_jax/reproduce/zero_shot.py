"""Zero-shot retrieval of a pre-trained retriever on dev questions: recall@5 and MRR per question.

A pre-training run (ICT or REALM) publishes its final index under ``<run>/index`` with the tower
that embedded it. Its dev questions are embedded with that index's own query tower (as the run's
evaluation does), the index is searched ``DEPTH`` blocks deep, and each question gets
``recall_at_5`` (an answer string in the top 5 blocks, ``evaluation.has_answer``, as
``train.realm.retrieval_recall``) and ``reciprocal_rank``: 1 / the rank of the first block cut
from the question's gold passage (0 when none is in the top ``DEPTH``). Records are cached under
``<root>/per_question/zero_shot.<run>.<dataset>.dev.jsonl``; ``summarize`` turns two runs'
records (the ICT start and the run after REALM pre-training) into the table's figures.
"""

from __future__ import annotations

import os

import numpy as np

from realm_jax.data.blocks import BlockStore
from realm_jax.data.input_pipeline import corpus_documents, load_questions
from realm_jax.data.tokenization import Tokenizer
from realm_jax.evaluation import has_answer
from realm_jax.index.live import load_snapshot
from realm_jax.index.published import run_query_tower
from realm_jax.index.store import IndexStore
from realm_jax.models.realm import EmbedderSpec, QueryEncoder
from realm_jax.openqa.answerer import question_ids
from realm_jax.reproduce import runner, stats
from realm_jax.reproduce.plan import DATASETS
from realm_jax.run.files import INDEX_DIR, read_run_config
from realm_jax.run.model_setup import realm_config
from realm_jax.utils.jsonl import write_jsonl

DEPTH = 100  # blocks searched per question for the reciprocal rank
TOP_K = 5  # recall@5
SPLIT = "dev"
_BATCH = 256  # questions embedded at a time (one padded shape: one compilation)


def query_len(config) -> int:
    """The query length a pre-training run embedded its questions with."""
    if config.stage == "realm":
        return config.realm.query_len
    if config.stage == "ict":
        return config.ict.query_len
    raise ValueError(f"a {config.stage} run has no retriever of its own (expected ict or realm)")


def block_passages(doc_index: np.ndarray, passage_ids) -> np.ndarray:
    """Passage id of each block: ``passage_ids`` are the corpus documents' ids in corpus order,
    ``doc_index`` [N] the position of each block's document (``BlockStore``'s array)."""
    return np.asarray(passage_ids, np.int64)[np.asarray(doc_index, np.int64)]


def question_records(rows, ranked, block_texts, passages) -> list[dict]:
    """Per-question records from ``ranked`` block ids [Q, depth] (best first, -1: none).

    ``block_texts(i)`` is block i's text, ``passages`` [N] each block's passage id.
    """

    records = []
    for row, ids in zip(rows, np.asarray(ranked), strict=True):
        ids = ids[ids >= 0]
        hits = passages[ids] == row["gold_passage_id"]
        rr = float(stats.reciprocal_ranks(hits[None])[0])
        records.append({
            "question": row["question"], "answers": list(row["answers"]),
            "gold_passage_id": int(row["gold_passage_id"]),
            "recall_at_5": any(has_answer(block_texts(int(b)), row["answers"])
                               for b in ids[:TOP_K]),
            "gold_rank": int(hits.argmax()) + 1 if hits.any() else 0,
            "reciprocal_rank": rr,
        })
    return records


def _embed(encoder, tower: dict, ids: np.ndarray) -> np.ndarray:
    out = []
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        padded = np.zeros((_BATCH, ids.shape[1]), ids.dtype)
        padded[: len(chunk)] = chunk
        out.append(encoder(tower, padded)[: len(chunk)])
    return np.concatenate(out)


def _retriever(run_dir: str):
    """(store, searcher, query tower, encoder, block passage ids, query length) of a run."""

    config = read_run_config(run_dir)
    length = query_len(config)
    snapshot = load_snapshot(IndexStore(os.path.join(run_dir, INDEX_DIR)))
    if snapshot is None:
        raise FileNotFoundError(f"{run_dir}/{INDEX_DIR}: no published index")
    tower = run_query_tower(run_dir, snapshot)
    store = BlockStore(config.data.blocks_dir)
    passages = block_passages(store.arrays["doc_index"],
                              [pid for pid, _, _ in corpus_documents(config.data)])
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    return store, snapshot.searcher, tower, QueryEncoder(spec), passages, length


def records_path(root: str, run: str, dataset: str) -> str:
    return os.path.join(root, runner.PER_QUESTION_DIR, f"zero_shot.{run}.{dataset}.{SPLIT}.jsonl")


def run_records(root: str, run: str, datasets=DATASETS) -> dict[str, list[dict]]:
    """``{dataset: per-question records}`` of run ``<root>/<run>`` on each dev set (cached)."""

    cached = {d: runner.read_records(records_path(root, run, d)) for d in datasets}
    missing = [d for d, records in cached.items() if records is None]
    if missing:
        runner.in_child(write_records, root, run, missing)
    return cached | {d: runner.read_records(records_path(root, run, d)) for d in missing}


def write_records(root: str, run: str, datasets) -> None:
    """Retrieves for each dev set's questions with run ``<root>/<run>``; writes their records."""
    store, searcher, tower, encoder, passages, length = _retriever(os.path.join(root, run))
    tokenizer = Tokenizer()
    for dataset in datasets:
        print(f"zero-shot retrieval of {run} on {dataset} {SPLIT}", flush=True)
        rows = load_questions(dataset, SPLIT)
        ranked = np.zeros((0, 0), np.int64)
        if rows:
            ids = question_ids(store, tokenizer, [r["question"] for r in rows], length)
            ranked = searcher.search(_embed(encoder, tower, ids), min(DEPTH, len(store)))[1]
        records = question_records(rows, ranked, store.text, passages)
        os.makedirs(os.path.dirname(records_path(root, run, dataset)), exist_ok=True)
        write_jsonl(records_path(root, run, dataset), records)


def _figures(records: list[dict]) -> dict:
    return {
        "recall_at_5": 100.0 * float(np.mean([r["recall_at_5"] for r in records])),
        "mrr": float(np.mean([r["reciprocal_rank"] for r in records])),
    }


def _compare(start: list[dict], after: list[dict]) -> dict | None:
    if [r["question"] for r in start] != [r["question"] for r in after]:
        raise ValueError("zero-shot records of the two runs are not over the same questions")
    if not start:
        return None
    pick = lambda records, key: [float(r[key]) for r in records]
    return {
        "start": _figures(start),
        "realm": _figures(after),
        "change": {
            "recall_at_5": stats.paired_bootstrap(
                pick(after, "recall_at_5"), pick(start, "recall_at_5"), scale=100.0
            ),
            "mrr": stats.paired_bootstrap(
                pick(after, "reciprocal_rank"), pick(start, "reciprocal_rank"), scale=1.0
            ),
        },
        "n_questions": len(start),
    }


def summarize(start: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict | None:
    """Pooled and per-set figures of the start and after-REALM records (``{dataset: records}``):
    recall@5 in percent, MRR as a fraction, the change (after - start) with its paired bootstrap
    interval (percentage points; MRR as a fraction). None when there is no question at all."""
    pooled = _compare([r for d in start for r in start[d]], [r for d in start for r in after[d]])
    if pooled is None:
        return None
    return pooled | {"per_set": {d: _compare(start[d], after[d]) for d in start}}


def zero_shot(root: str, start: str = "ict", after: str = "realm", datasets=DATASETS):
    """The table's zero-shot record for runs ``start`` and ``after`` under ``root`` (None if
    either run has not finished)."""
    for run in (start, after):
        if not os.path.isfile(os.path.join(root, run, runner.DONE_FILE)):
            return None
    return summarize(run_records(root, start, datasets), run_records(root, after, datasets))
