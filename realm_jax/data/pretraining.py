"""Static-shape batches for REALM pre-training and ORQA-style open-QA fine-tuning.

REALM (google-research/language ``language/realm``): candidates come from an injected searcher;
``example_generator.postprocess_candidates`` drops the query's own block (same uid), puts the null
document (empty title and body, uid of ``" <sep> "``) first and keeps ``num_candidates``; a
duplicate retrieval is dropped here (REALM skips the whole example). ``featurization.py`` builds
the query ``[CLS] masked-x [SEP]``, candidates ``[CLS] title [SEP] body [SEP]`` and the encoder's
joint input ``[CLS] masked-x [SEP] body [SEP]`` (no title; query cut to ``query_len - 2``, body to
``cand_len - 2``, total ``query_len + cand_len``); MLM positions are shifted by one for ``[CLS]``.

Open QA (ORQA ``orqa_model.py`` / ``orqa_ops.cc``): reader input ``[CLS] question [SEP] block
[SEP]`` (block body, no title), every occurrence of every answer in the block marked as a gold
span. String answers match on their uncased wordpieces (the tokenizer's lower-casing and accent
stripping), and never end inside a word (ORQA's search would match "art" in "art ##ist"); regex
answers (CuratedTrec) match on the block text and map to the wordpieces they overlap. A beam
block is correct when ``evaluation.has_answer`` holds, the rule recall@k is scored with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from realm_jax.data.blocks import BlockStore, bert_inputs
from realm_jax.data.evidence import first_occurrence
from realm_jax.data.packing import block_uid, continuation_table
from realm_jax.data.salient_spans import MaskedSentence
from realm_jax.evaluation import has_answer, regex_spans

NULL_UID = block_uid("", "")  # REALM's NULL_DOCUMENT
# query_ids [B, query_len] int32 -> retrieved block ids [B, k], best first (-1: nothing).
Searcher = Callable[[np.ndarray], np.ndarray]


def select_candidates(
    retrieved: Sequence[int], own_uid: bytes, uids: np.ndarray, num_candidates: int
) -> list[int]:
    """Up to ``num_candidates - 1`` block ids: retrieval order, without the query's own block,
    duplicates or -1 (the null document takes the first slot)."""
    chosen, seen = [], {own_uid, NULL_UID}
    for block in retrieved:
        block = int(block)
        if block < 0 or (uid := bytes(uids[block])) in seen:
            continue
        seen.add(uid)
        chosen.append(block)
        if len(chosen) == num_candidates - 1:
            break
    return chosen


def mlm_targets(
    queries: Sequence[MaskedSentence], query_len: int, max_masks: int
) -> dict[str, np.ndarray]:
    """``mlm_positions`` (into a joint input, after ``[CLS]``), ``mlm_targets`` and ``mlm_mask``
    ``[B, max_masks]`` of masked sentences; raises if a sentence's masks do not fit."""
    b = len(queries)
    positions = np.zeros((b, max_masks), np.int32)
    targets = np.zeros((b, max_masks), np.int32)
    for row, q in enumerate(queries):
        if len(q.positions) > max_masks or (len(q.positions) and q.positions[-1] >= query_len - 2):
            raise ValueError(
                f"block {q.block_index} sentence {q.sentence_index}: masks do not fit "
                f"query_len {query_len} / max_masks {max_masks}"
            )
        positions[row, : len(q.positions)] = q.positions + 1  # after [CLS]
        targets[row, : len(q.targets)] = q.targets
    mask = np.arange(max_masks) < np.array([len(q.positions) for q in queries])[:, None]
    return {"mlm_positions": positions, "mlm_targets": targets, "mlm_mask": mask}


def query_tokens(queries: Sequence[MaskedSentence], query_len: int) -> list[np.ndarray]:
    """The masked sentences cut to ``query_len - 2`` wordpieces: the ``x`` of REALM's query
    ``[CLS] x [SEP]`` and of its joint input ``[CLS] x [SEP] z [SEP]``."""
    return [q.token_ids[: query_len - 2] for q in queries]


def query_inputs(
    store: BlockStore, queries: Sequence[MaskedSentence], query_len: int
) -> dict[str, np.ndarray]:
    """The retriever's query inputs ``[CLS] x [SEP]`` ``[B, query_len]`` of masked sentences."""
    return bert_inputs(query_tokens(queries, query_len), None, query_len, store.cls_id,
                       store.sep_id)


def realm_batch(
    store: BlockStore,
    queries: Sequence[MaskedSentence],
    search: Searcher,
    num_candidates: int = 8,
    query_len: int = 96,
    cand_len: int = 288,
    joint_len: int | None = None,
    max_masks: int = 10,
    query_uids: Sequence[bytes] | None = None,
) -> dict[str, np.ndarray]:
    """Masked sentences + retrieval -> the REALM step's batch (keys in ``train/realm.py``).

    ``query_uids``: uids of the queries' source blocks when they come from another corpus than
    ``store`` (X != Z, e.g. CC-News); by default the queries' blocks are in ``store``.

    Shapes: query ``[B, query_len]``, candidates ``[B, K, cand_len]``, joint ``[B, K, joint_len]``
    (default ``query_len + cand_len``), MLM ``[B, max_masks]``; ``cand_valid`` and ``mlm_mask``
    are bool, the rest int32. Masks must lie in the first ``query_len - 2`` wordpieces.
    """
    b, k = len(queries), num_candidates
    joint_len = joint_len or query_len + cand_len
    cls, sep = store.cls_id, store.sep_id
    mlm = mlm_targets(queries, query_len, max_masks)
    query = query_inputs(store, queries, query_len)
    retrieved = np.asarray(search(query["input_ids"]))  # [B, >= K - 1]
    if retrieved.ndim != 2 or len(retrieved) != b:
        raise ValueError(f"search returned shape {retrieved.shape}; expected [{b}, k]")
    empty = np.zeros(0, np.int32)
    titles, bodies, valid = [], [], np.zeros((b, k), bool)
    for row, q in enumerate(queries):
        own = store.uid(q.block_index) if query_uids is None else query_uids[row]
        ids = select_candidates(retrieved[row], own, store.uids, k)
        valid[row, : 1 + len(ids)] = True
        padding = [empty] * (k - 1 - len(ids))  # null-document inputs, masked out by cand_valid
        titles += [empty] + [store.title_ids(i) for i in ids] + padding
        bodies += [empty] + [store.token_ids(i) for i in ids] + padding
    cand = bert_inputs(titles, bodies, cand_len, cls, sep)
    repeated = [t for t in query_tokens(queries, query_len) for _ in range(k)]
    joint = bert_inputs(repeated, [body[: cand_len - 2] for body in bodies], joint_len, cls, sep)
    shaped = lambda x, n: x.reshape(b, k, n)
    return {
        "query_ids": query["input_ids"],
        "query_mask": query["input_mask"],
        "cand_ids": shaped(cand["input_ids"], cand_len),
        "cand_mask": shaped(cand["input_mask"], cand_len),
        "cand_type_ids": shaped(cand["token_type_ids"], cand_len),
        "cand_valid": valid,
        "joint_ids": shaped(joint["input_ids"], joint_len),
        "joint_mask": shaped(joint["input_mask"], joint_len),
        "joint_type_ids": shaped(joint["token_type_ids"], joint_len),
        **mlm,
    }


def block_rest(store: BlockStore, block: int, sentence: int) -> np.ndarray:
    """The body wordpieces of ``block`` without sentence ``sentence``: its other sentences."""
    tokens = store.token_ids(block)
    starts = np.append(store.sentence_token_starts(block), len(tokens))
    return np.concatenate([tokens[: starts[sentence]], tokens[starts[sentence + 1] :]])


def span_window(context: np.ndarray, span: np.ndarray, length: int) -> np.ndarray:
    """At most ``length`` wordpieces of ``context``: the window centred on the first occurrence of
    ``span`` if the context is longer and holds it, else its first ``length``."""
    if len(context) <= length:
        return context
    at = first_occurrence(context, span)
    if at < 0:
        return context[:length]
    start = min(max(at + len(span) // 2 - length // 2, 0), len(context) - length)
    return context[start : start + length]


def mlm_batch(
    store: BlockStore,
    queries: Sequence[MaskedSentence],
    contexts: Sequence[np.ndarray],
    query_len: int,
    context_len: int,
    max_masks: int,
) -> dict[str, np.ndarray]:
    """Masked sentences, one context each -> the MLM warm start's batch (``train/mlm.py``).

    The input is REALM's joint input ``[CLS] masked-x [SEP] context [SEP]`` with the same cuts
    (query to ``query_len - 2``, context to ``context_len - 2``, total ``query_len +
    context_len``); an empty context is the null document's input. A longer context keeps the
    window around the masked span's first occurrence (``span_window``), so a short
    ``context_len`` still shows the answer where the context holds it.
    """
    mlm = mlm_targets(queries, query_len, max_masks)
    pairs = zip(queries, contexts, strict=True)
    cut = [span_window(c, q.targets, context_len - 2) for q, c in pairs]
    tokens = query_tokens(queries, query_len)
    joint = bert_inputs(tokens, cut, query_len + context_len, store.cls_id, store.sep_id)
    return {
        "joint_ids": joint["input_ids"],
        "joint_mask": joint["input_mask"],
        "joint_type_ids": joint["token_type_ids"],
        **mlm,
    }


def find_token_spans(
    tokens: Sequence[int], answer: Sequence[int], is_continuation: np.ndarray
) -> list[tuple[int, int]]:
    """Every ``(start, end)`` (inclusive) where ``answer`` occurs in ``tokens`` as whole words."""
    tokens, n = np.asarray(tokens), len(answer)
    if n == 0 or n > len(tokens):
        return []
    windows = np.lib.stride_tricks.sliding_window_view(tokens, n)  # [len - n + 1, n]
    hits = np.flatnonzero(np.all(windows == np.asarray(answer), axis=1))
    following = np.append(tokens, 0)[hits + n]  # 0 is [PAD]: the end of the block
    ends_word = ~is_continuation[following]
    return [(int(s), int(s) + n - 1) for s in hits[ends_word]]


def find_regex_spans(
    text: str, offsets: Sequence[tuple[int, int]], patterns: Sequence[str]
) -> list[tuple[int, int]]:
    """Wordpiece spans ``(start, end)`` (inclusive) overlapping each regex match in ``text``.

    Matches come from ``evaluation.regex_spans`` (ORQA's flags): an invalid pattern, or one that
    runs over ``evaluation.REGEX_TIMEOUT_S`` on ``text``, matches nothing.
    """
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    spans = set()
    for pattern in patterns:
        for s, e in regex_spans(text, pattern):
            inside = np.flatnonzero((offsets[:, 1] > s) & (offsets[:, 0] < e))
            if s < e and len(inside):
                spans.add((int(inside[0]), int(inside[-1])))
    return sorted(spans)


def openqa_batch(
    store: BlockStore,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[Sequence[str]],
    block_ids: np.ndarray,
    block_emb: np.ndarray,
    reader_beam: int = 5,
    question_len: int = 64,
    reader_len: int = 320,
    max_gold_spans: int = 16,
    is_regex: bool = False,
    is_continuation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Questions + retrieved ``block_ids [B, beam]`` (-1: none) -> the open-QA step's batch.

    ``block_emb [num_blocks, D]`` is the frozen index; the first ``reader_beam`` blocks are read.
    Gold spans are positions in the reader input, ``[B, reader_beam, max_gold_spans]``, -1 pads
    (spans past ``max_gold_spans`` are dropped: one correct span is enough for the loss).
    """
    b, beam = block_ids.shape
    cls, sep = store.cls_id, store.sep_id
    if is_continuation is None:
        is_continuation = continuation_table(tokenizer)  # [vocab]; pass it in to skip this
    q_tokens = tokenizer.tokenize(questions)
    question = bert_inputs(q_tokens, None, question_len, cls, sep)
    valid = block_ids >= 0
    beam_emb = np.where(valid[..., None], np.asarray(block_emb[np.maximum(block_ids, 0)]), 0)
    correct = np.zeros((b, beam), bool)
    for row in range(b):
        for j in np.flatnonzero(valid[row]):
            correct[row, j] = has_answer(store.text(int(block_ids[row, j])), answers[row], is_regex)
    read = np.where(valid[:, :reader_beam], block_ids[:, :reader_beam], -1)  # [B, R]
    empty = np.zeros(0, np.int32)
    bodies = [store.token_ids(int(i)) if i >= 0 else empty for i in read.reshape(-1)]
    firsts = [q[: question_len - 2] for q in q_tokens for _ in range(reader_beam)]
    reader = bert_inputs(firsts, bodies, reader_len, cls, sep)
    gold = np.full((b * reader_beam, 2, max_gold_spans), -1, np.int32)
    block_mask = np.zeros((b * reader_beam, reader_len), np.int32)
    answer_tokens = [tokenizer.tokenize(a) if not is_regex and a else [] for a in answers]
    for n, block in enumerate(read.reshape(-1)):
        row, start = n // reader_beam, 2 + len(firsts[n])  # the body's first position
        kept = min(len(bodies[n]), reader_len - 1 - start)
        block_mask[n, start : start + kept] = 1
        if block < 0 or kept <= 0:
            continue
        if is_regex:
            _, offsets = tokenizer.tokenize_with_offsets([store.text(int(block))])
            spans = find_regex_spans(store.text(int(block)), offsets[0], answers[row])
        else:
            found = (find_token_spans(bodies[n], a, is_continuation) for a in answer_tokens[row])
            spans = sorted(set().union(*found))
        spans = [(s + start, e + start) for s, e in spans if e < kept][:max_gold_spans]
        gold[n, :, : len(spans)] = np.asarray(spans, np.int32).T.reshape(2, -1)
    shaped = lambda x: x.reshape(b, reader_beam, -1)
    return {
        "question_ids": question["input_ids"],
        "question_mask": question["input_mask"],
        "beam_emb": beam_emb.astype(np.float32),
        "beam_valid": valid,
        "beam_correct": correct,
        "reader_ids": shaped(reader["input_ids"]),
        "reader_mask": shaped(reader["input_mask"]),
        "reader_type_ids": shaped(reader["token_type_ids"]),
        "reader_block_mask": shaped(block_mask),
        "gold_starts": shaped(gold[:, 0]),
        "gold_ends": shaped(gold[:, 1]),
    }
