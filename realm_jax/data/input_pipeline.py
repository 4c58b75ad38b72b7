"""What the stages feed their steps: the block store, and batches as pure functions of the step.

Batch ``i`` of a run depends only on ``(config.seed, i)`` (numpy generators seeded with
``[seed, stream, i, ...]``), so a run resumed from a checkpoint at step ``s`` sees exactly the
batches ``s, s+1, ...`` an uninterrupted run would. Each process builds only its share of the
global batch (``process_rows``): on one host that is all of it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.data import documents, released_blocks
from realm_jax.data.blocks import BlockStore, build_blocks
from realm_jax.data.evidence import EvidenceIndex
from realm_jax.data.ict import ict_batch
from realm_jax.data.packing import continuation_table
from realm_jax.data.questions import SPLIT_SIZES, iter_rows, read_questions
from realm_jax.data.salient_spans import (
    SPANS_DIR,
    MaskedSentence,
    SalientSpans,
    build_salient_spans,
    mask_sentences,
    sample_sentences,
)
from realm_jax.data.tokenization import Tokenizer
from realm_jax.errors import ConfigError, JsonlError
from realm_jax.utils.devices import sync
from realm_jax.utils.jsonl import iter_jsonl

# Seed streams: training batches, held-out batches, question order.
TRAIN, EVAL, ORDER = 0, 1, 2


def process_rows(global_batch: int) -> slice:
    """This process's rows of a global batch (checked divisible by every device)."""
    devices = jax.process_count() * jax.local_device_count()
    if global_batch % devices:
        raise ConfigError(f"batch_size={global_batch} is not a multiple of the {devices} devices")
    per = global_batch // jax.process_count()
    return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


# ---------------------------------------------------------------------------------------------
# The knowledge corpus.


def _parse_questions_spec(spec: str) -> tuple[str, str]:
    dataset, _, split = spec.partition(":")
    return dataset, split or "train"


def corpus_documents(data: ConfigDict) -> list[tuple[int, str, str]]:
    """``(passage id, title, text)`` of the documents the config selects, in corpus order."""
    if data.titles:  # ORQA's blocks.tfr / titles.tfr: no ids, one block per record
        docs = documents.iter_tfrecord_documents(data.corpus, data.titles)
        return [(i, t, x) for i, (t, x) in enumerate(itertools.islice(docs, data.max_documents))]
    if not os.path.isfile(data.corpus):
        raise ConfigError(f"data.corpus={data.corpus!r}: no such file")
    rows, first_line = [], {}
    for n, (line, r) in enumerate(iter_jsonl(data.corpus, ("title", "text"))):
        pid = r.get("id", n)
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise JsonlError(data.corpus, line, "field 'id' must be an integer")
        if pid in first_line:
            raise JsonlError(data.corpus, line, f"duplicate id {pid} (first on line "
                             f"{first_line[pid]})")
        for field in ("title", "text"):
            if not isinstance(r[field], str):
                raise JsonlError(data.corpus, line, f"field {field!r} must be a string")
        first_line[pid] = line
        rows.append((pid, r["title"], r["text"]))
    if data.gold_questions:
        gold = dict.fromkeys(
            q["gold_passage_id"]
            for q in read_questions(*_parse_questions_spec(data.gold_questions))
        )
        wanted = set(itertools.islice(gold, data.max_documents))
        return [r for r in rows if r[0] in wanted]
    return rows[: data.max_documents]


def blocks_dir(config: ConfigDict, workdir: str) -> str:
    """``data.blocks_dir``, or a cache beside the workdir keyed by the corpus fields."""
    d = config.data
    if d.blocks_dir:
        return d.blocks_dir
    key = [d.corpus, d.titles, d.block_len, d.max_documents, d.gold_questions]
    if d.get("examples"):
        key.append(d.examples)
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]
    parent = os.path.dirname(os.path.abspath(workdir))
    return os.path.join(parent, "cache", f"blocks-{digest}")


def target_config(config: ConfigDict) -> ConfigDict | None:
    """The config whose data section is X, the pre-training corpus, when X != Z (else None)."""
    if not config.data.get("target_corpus"):
        return None
    target = config.copy_and_resolve_references()
    with target.unlocked():
        target.data.corpus, target.data.target_corpus = config.data.target_corpus, None
        target.data.titles = target.data.gold_questions = target.data.blocks_dir = None
    return target


def _build_store(config: ConfigDict, directory: str, tokenizer: Tokenizer) -> None:
    """Packs ``config.data``'s corpus into a store at ``directory`` (see data.blocks)."""

    d = config.data
    kw = dict(max_len=d.block_len, progress=config.progress)
    if d.get("examples"):  # REALM's pre-tokenized blocks beside blocks.tfr / titles.tfr
        if not d.titles:
            raise ConfigError("data.examples needs data.corpus=blocks.tfr and data.titles")
        released_blocks.build_blocks_from_examples(
            d.corpus, d.titles, d.examples, directory, tokenizer, **kw
        )
    elif d.corpus.endswith(".npy"):  # the PyTorch port's block_records.npy
        released_blocks.build_blocks_from_block_records(d.corpus, directory, tokenizer, **kw)
    elif d.titles:  # blocks.tfr / titles.tfr, streamed: never 13M Python strings at once
        docs = documents.iter_tfrecord_documents(d.corpus, d.titles)
        docs = itertools.islice(docs, d.max_documents)
        build_blocks(docs, directory, tokenizer, prepacked=True, source=d.corpus, **kw)
    else:
        rows = corpus_documents(d)
        if not rows:
            raise ConfigError(f"data.corpus={d.corpus!r}: the selection has no documents")
        docs = ((title, text) for _, title, text in rows)
        build_blocks(docs, directory, tokenizer, source=d.corpus, total=len(rows), **kw)


def prepare_blocks(
    config: ConfigDict, directory: str, tokenizer: Tokenizer, salient_spans: bool = False
) -> BlockStore:
    """The block store at ``directory``, packed (and annotated) first if it is not there yet.

    Across hosts process 0 packs it and the others open it after a barrier (shared filesystem)."""
    if jax.process_index() == 0:
        if not os.path.isdir(directory):
            _build_store(config, directory, tokenizer)
        if salient_spans and not os.path.isdir(os.path.join(directory, SPANS_DIR)):
            build_salient_spans(directory, progress=config.progress)
    sync(f"prepare_blocks:{directory}")
    return BlockStore(directory)


def block_buckets(store: BlockStore) -> np.ndarray:
    """A uniform number in [0, 100) per block from its uid (SHA1), for held-out splits."""
    uids = np.asarray(store.uids)
    return np.array([int.from_bytes(bytes(u)[:8], "big") % 100 for u in uids], np.int64)


# ---------------------------------------------------------------------------------------------
# ICT.


def ict_examples(
    num_sentences: np.ndarray, rng: np.random.Generator, batch_size: int, remove_prob: float
) -> list[tuple[int, int, bool]]:
    """``batch_size`` distinct ``(block, sentence, remove)`` as ORQA's ICT draws them.

    A removal drawn for a one-sentence block would leave no body; as ORQA, that draw is dropped.
    """
    n, picked, seen = len(num_sentences), [], set()
    draw = min(n, 2 * batch_size + 16)  # a few spare draws, so one pass nearly always suffices
    for attempt in range(2):
        order = rng.choice(n, size=draw if attempt == 0 else n, replace=False)
        for block in order:
            block = int(block)
            ns = int(num_sentences[block])
            remove = bool(rng.random() < remove_prob)
            if block in seen or ns == 0 or (remove and ns == 1):
                continue
            seen.add(block)
            picked.append((block, int(rng.integers(ns)), remove))
            if len(picked) == batch_size:
                return picked
    raise ConfigError(f"batch_size={batch_size} exceeds the corpus's usable ICT blocks")


class IctBatches:
    """ICT batch of step ``i`` (``[seed, stream, i]``): this process's rows of the global batch."""

    def __init__(self, store: BlockStore, config: ConfigDict):
        self.store = store
        self.config = config
        self.num_sentences = np.diff(np.asarray(store.arrays["sentence_offsets"]))
        self.rows = process_rows(config.batch_size)

    def __call__(self, step: int, stream: int = TRAIN) -> dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng([c.seed, stream, step])
        examples = ict_examples(self.num_sentences, rng, c.batch_size, c.ict.remove_prob)
        blocks, sentences, remove = zip(*examples[self.rows], strict=True)
        return ict_batch(self.store, blocks, sentences, remove, c.ict.query_len, c.ict.block_len)


# ---------------------------------------------------------------------------------------------
# REALM.


class MaskedQueries:
    """Masked sentences of step ``i``: salient spans drawn as REALM's generator draws them.

    Blocks are split by uid into training and held-out (``realm.eval_block_percent``) ones;
    the held-out blocks stay in the knowledge corpus but never give a training query.
    """

    def __init__(self, store: BlockStore, tokenizer: Tokenizer, config: ConfigDict):
        self.store, self.tokenizer, self.config = store, tokenizer, config
        self.spans = SalientSpans(store)
        self.is_continuation = continuation_table(tokenizer)
        with_spans = np.flatnonzero(np.diff(self.spans.offsets) > 0)
        if len(with_spans) < 2:
            raise ConfigError(f"{store.directory}: fewer than 2 blocks have a salient span")
        order = with_spans[np.argsort(block_buckets(store)[with_spans], kind="stable")]
        num_eval = max(1, round(len(order) * config.realm.eval_block_percent / 100))
        self.eval_blocks, self.train_blocks = np.sort(order[:num_eval]), np.sort(order[num_eval:])
        self.rows = process_rows(config.batch_size)
        # Only sentences whose masked span some other block holds (salient masks; see evidence.py).
        wants_evidence = config.realm.get("require_evidence", False)
        if wants_evidence and config.realm.masker != "salient":
            raise ConfigError(
                f"realm.require_evidence needs realm.masker='salient', not "
                f"{config.realm.masker!r} (other masks are not one span)"
            )
        self.evidence = EvidenceIndex(store) if wants_evidence else None

    def usable(self, masked: MaskedSentence | None) -> bool:
        """A sentence a span fits in (and, with ``realm.require_evidence``, held elsewhere)."""
        if masked is None:
            return False
        return self.evidence is None or len(self.evidence_elsewhere(masked)) > 0

    def evidence_elsewhere(self, masked: MaskedSentence, index: EvidenceIndex | None = None):
        """Other blocks holding ``masked``'s span (and its topic: ``realm.evidence_min_shared``)."""
        r, index = self.config.realm, index or self.evidence
        shared = r.get("evidence_min_shared", 0)
        topic = index.topic(masked, r.get("evidence_max_df", 0.01)) if shared else None
        return index.blocks_with(masked.targets, masked.block_index, topic, shared)

    def draw(self, rng: np.random.Generator, blocks: np.ndarray, n: int) -> list[MaskedSentence]:
        """``n`` masked sentences from ``blocks``; sentences no span fits in are skipped."""
        r = self.config.realm
        out: list[MaskedSentence] = []
        for _ in range(100):
            pairs = sample_sentences(self.spans, rng, 2 * (n - len(out)) + 4, blocks)
            masked = mask_sentences(
                self.store, self.spans, pairs, self.tokenizer, rng, r.masker, r.max_masks,
                r.query_len - 2, self.is_continuation,
            )
            out += [m for m in masked if self.usable(m)][: n - len(out)]
            if len(out) == n:
                return out
        also = " and evidence in another block" if self.evidence else ""
        raise ConfigError(f"realm.max_masks={r.max_masks}: too few sentences have a span that "
                          f"fits{also}")

    def __call__(self, step: int, stream: int = TRAIN) -> list[MaskedSentence]:
        """This process's queries of step ``step`` (held-out blocks when ``stream`` is EVAL)."""
        rng = np.random.default_rng([self.config.seed, stream, step, jax.process_index()])
        blocks = self.train_blocks if stream == TRAIN else self.eval_blocks
        return self.draw(rng, blocks, self.rows.stop - self.rows.start)


# ---------------------------------------------------------------------------------------------
# Open-QA questions.


def _read_file(path: str) -> list[dict]:
    return [row for _, row in iter_rows(path)]  # fields checked: JsonlError names the line


def _in_dev(question: str, percent: int) -> bool:
    return int(hashlib.sha1(question.encode()).hexdigest()[:8], 16) % 100 < percent


def load_questions(
    dataset: str, split: str, path: str | None = None, dev_percent: int = 10
) -> list[dict]:
    """``{question, answers, gold_passage_id}`` rows of ``split`` of a dataset (or of ``path``).

    A dataset without a dev split gives ``dev_percent`` of its train questions (by question
    hash) as "dev", and "train" is then the rest.
    """
    if path:
        return _read_file(path)
    if not dataset:
        raise ConfigError(f"no question file and no dataset for split {split!r}")
    if split not in ("train", "dev") or "dev" in SPLIT_SIZES.get(dataset, {"dev": 0}):
        return read_questions(dataset, split)
    in_dev = split == "dev"  # no dev split shipped: carve it out of train
    rows = read_questions(dataset, "train")
    return [r for r in rows if _in_dev(r["question"], dev_percent) == in_dev]


def openqa_questions(config: ConfigDict, split: str) -> list[dict]:
    """Train or dev questions of an open-QA config (files win over ``openqa.dataset``)."""
    o = config.openqa
    path = o.train_file if split == "train" else o.dev_file
    return load_questions(o.dataset, split, path, o.dev_percent)


def keep_answerable(rows: Sequence[dict], passage_ids: set[int]) -> list[dict]:
    """Questions whose gold passage is in the corpus (for corpora cut from the mini set)."""
    return [r for r in rows if r["gold_passage_id"] in passage_ids]


def question_indices(num_questions: int, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Global batch ``step`` of shuffled epochs over the questions: indices [batch_size]."""
    first = step * batch_size
    out = np.empty(batch_size, np.int64)
    for j in range(batch_size):
        epoch, at = divmod(first + j, num_questions)
        if j == 0 or at == 0:
            order = np.random.default_rng([seed, ORDER, epoch]).permutation(num_questions)
        out[j] = order[at]
    return out
