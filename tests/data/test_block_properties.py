"""Properties of block packing and salient-span masking (hypothesis), on the packaged tokenizer
and spaCy's blank sentencizer; entity spans are drawn, not tagged (no spaCy model is loaded).

Packing and masking one sentence at a time: the hypothesis profile (conftest: 200 in CI, 100
otherwise); masking from a built store with its cached spans: 20, not shrunk (each builds a
store).
"""

import collections
import tempfile
import types

import numpy as np
from hypothesis import Phase, assume, event, given, settings
from hypothesis import strategies as st

from realm_jax.data.blocks import BlockStore, _chunk_blocks, bert_inputs, build_blocks
from realm_jax.data.packing import SentenceSplitter, block_uid, continuation_table
from realm_jax.data.pretraining import mlm_targets, query_tokens
from realm_jax.data.salient_spans import (
    ENTITY_LABELS,
    LABELS,
    MASKERS,
    MaskedSentence,
    SalientSpans,
    build_salient_spans,
    mask_sentence,
    mask_sentences,
    salient_spans,
    sample_sentences,
    spans_by_sentence,
)
from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import CorpusError

TOKENIZER = shared_tokenizer()
SPLITTER = SentenceSplitter()
IS_CONT = continuation_table(TOKENIZER)
MASK = TOKENIZER.mask_id
SPECIAL = {TOKENIZER.cls_id, TOKENIZER.sep_id, TOKENIZER.pad_id, MASK}

_words = st.sampled_from([
    "the", "Cat", "Paris", "unbelievable", "photosynthesis", "Dr.", "U.S.", "3.5", "1809",
    "March 3, 1809", "naïve", "Ro\u0308ntgen", "東京", "it's", "e-mail", "(", ")", '"', "Σ", "ﬁ",
    "x" * 110, "antidisestablishmentarianism", "Obama's", "1,000", "\u00a0", "\x07",
])
_sentences = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(_words, min_size=1, max_size=25),
    st.sampled_from([".", "!", "?", "...", '."', "。", ".)", ""]),
)
passages = st.one_of(
    st.lists(st.tuples(_sentences, st.sampled_from([" ", "  ", "\n", " \n\n", ""])), max_size=10)
    .map(lambda parts: "".join(s + sep for s, sep in parts)),
    st.text(max_size=200),
)
titles = st.one_of(st.text(max_size=30), st.lists(_words, max_size=12).map(" ".join))
prose = st.lists(_sentences, min_size=1, max_size=6).map(" ".join)  # always some wordpieces




def _no_special_strings(text: str) -> bool:
    return not any(t in text for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"))


# ---------------------------------------------------------------------------------------------
# Packing.


@given(docs=st.lists(st.tuples(titles, passages), min_size=1, max_size=3),
       max_len=st.integers(8, 64))
def test_blocks_fit_and_give_back_the_passage(docs, max_len):
    stats = collections.Counter()
    blocks = _chunk_blocks(docs, SPLITTER, TOKENIZER, max_len, False, IS_CONT, stats)
    assert stats["docs"] == len(docs) and [b.doc_index for b in blocks] == sorted(
        b.doc_index for b in blocks
    )
    for b in blocks:
        assert 0 < len(b.token_ids) and 3 + len(b.title_ids) + len(b.token_ids) <= max_len
        assert b.uid == block_uid(b.title, b.text)
        starts = np.append(b.sentence_token_starts, len(b.token_ids))
        assert starts[0] == 0 and np.all(np.diff(starts) > 0)
        bounds = b.sentence_char_spans.reshape(-1)
        assert bounds[0] == 0 and bounds[-1] == len(b.text) and np.all(np.diff(bounds) >= 0)
        for k, piece in enumerate(TOKENIZER.tokenize(b.sentences())):
            assert b.token_ids[starts[k] : starts[k + 1]].tolist() == piece
    for index, (title, text) in enumerate(docs):
        mine = [b for b in blocks if b.doc_index == index]
        title_ids = TOKENIZER.tokenize([title])[0][: max_len // 4]
        assert all(b.title_ids.tolist() == title_ids and b.title == title for b in mine)
        budget = max_len - 3 - len(title_ids)
        sentences = [text[s:e] for s, e in SPLITTER.split([text])[0]]
        pieces = [p for p in TOKENIZER.tokenize(sentences) if p] if sentences else []
        got = [s for b in mine for s in b.sentences()]
        got_pieces = TOKENIZER.tokenize(got) if got else []
        assert len(got) == len(pieces)  # every sentence with a wordpiece, in order
        for piece, got_piece in zip(pieces, got_pieces, strict=True):
            if len(piece) <= budget:
                assert got_piece == piece
            else:  # an over-long sentence is cut at its last whole word that fits, never emptied
                k = len(got_piece)
                assert 0 < k <= budget and got_piece == piece[:k]
                assert k == 1 or not IS_CONT[piece[k]]
                assert all(IS_CONT[t] for t in piece[k + 1 : budget + 1])  # no later cut fits
        at = 0  # block texts are the passage's own text, in order
        for b in mine:
            at = text.index(b.text, at) + len(b.text)
        event("a sentence cut" if any(len(p) > budget for p in pieces) else "nothing cut")
        if all(len(p) <= budget for p in pieces):  # nothing cut: the wordpieces round-trip
            body = [t for b in mine for t in b.token_ids.tolist()]
            assert body == TOKENIZER.tokenize([text])[0]


# ---------------------------------------------------------------------------------------------
# Masking one sentence.

_labels = st.sampled_from([*ENTITY_LABELS, "DATE", "CARDINAL", "MONEY"])


def _entities(data, text: str) -> list[tuple[int, int, str]]:
    bound = st.integers(0, len(text))
    drawn = data.draw(st.lists(st.tuples(bound, bound, _labels), max_size=6))
    return [(min(s, e), max(s, e), label) for s, e, label in drawn]


def _fitting(offsets, spans, max_masks, limit) -> list[np.ndarray]:
    """The spans whose non-empty wordpieces strictly inside number 1..max_masks, before limit."""
    starts, ends = offsets[:, 0], offsets[:, 1]
    found = [np.flatnonzero((starts >= s) & (ends <= e) & (ends > starts)) for s, e in spans]
    return [p for p in found if 0 < len(p) <= max_masks and p[-1] < limit]


def _check_query(masked, positions, targets, query_len, max_masks) -> None:
    """In REALM's query ``[CLS] x [SEP]`` every MLM position holds [MASK]."""
    q = MaskedSentence(0, 0, masked, positions, targets)
    mlm = mlm_targets([q], query_len, max_masks)
    ids = bert_inputs(query_tokens([q], query_len), None, query_len, TOKENIZER.cls_id,
                      TOKENIZER.sep_id)["input_ids"][0]
    at = mlm["mlm_positions"][0][mlm["mlm_mask"][0]]
    assert len(at) == len(positions) and np.all(ids[at] == MASK)
    assert np.array_equal(mlm["mlm_targets"][0][: len(targets)], targets)


@given(text=passages, data=st.data(), masker=st.sampled_from(MASKERS),
       max_masks=st.integers(1, 12), max_tokens=st.none() | st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_masks_stay_in_one_sentence_within_budget(text, data, masker, max_masks, max_tokens, seed):
    assume(_no_special_strings(text))
    blocks = _chunk_blocks([("Title", text)], SPLITTER, TOKENIZER, 48, False, IS_CONT,
                           collections.Counter())
    assume(blocks)
    block = data.draw(st.sampled_from(blocks))
    chars = block.sentence_char_spans
    spans = salient_spans(block.text, _entities(data, block.text))
    assert all(0 <= s < e <= len(block.text) and 0 <= label < len(LABELS) for s, e, label in spans)
    rows = spans_by_sentence(spans, chars)
    assert all(chars[k][0] <= s < e <= chars[k][1] for s, e, _, k in rows)
    kept = {row[:3] for row in rows}
    for s, e, _ in set(spans) - kept:  # only spans across a sentence boundary are dropped
        assert not any(a <= s and e <= b for a, b in chars)
    starts = np.append(block.sentence_token_starts, len(block.token_ids))
    for k, (a, b) in enumerate(chars):
        ids = block.token_ids[starts[k] : starts[k + 1]]
        offsets = np.asarray(TOKENIZER.tokenize_with_offsets([block.text[a:b]])[1][0], np.int32)
        offsets = offsets.reshape(-1, 2)
        assert len(offsets) == len(ids)
        cand = np.array([(s - a, e - a) for s, e, _, j in rows if j == k], np.int64).reshape(-1, 2)
        args = (MASK, IS_CONT, masker, max_masks, max_tokens)
        out = mask_sentence(ids, offsets, cand, np.random.default_rng([seed, k]), *args)
        limit = len(ids) if max_tokens is None else min(len(ids), max_tokens)
        fitting = _fitting(offsets, cand, max_masks, limit)
        assert (out is None) == (not fitting)  # skipped only when no span fits
        for p in _fitting(offsets, cand, max_masks, len(ids)):  # a limit right at a span's end
            cut = mask_sentence(ids, offsets, cand, np.random.default_rng(seed), MASK, IS_CONT,
                                masker, max_masks, int(p[-1]))
            assert cut is None or cut[1][-1] < p[-1]
        event(f"{masker}: masked" if out else f"{masker}: no span fits")
        if out is None:
            continue
        masked, positions, targets = out
        assert 1 <= len(positions) <= max_masks
        assert positions[0] >= 0 and positions[-1] < limit and np.all(np.diff(positions) > 0)
        assert np.all(masked[positions] == MASK) and np.array_equal(targets, ids[positions])
        assert np.array_equal(np.delete(masked, positions), np.delete(ids, positions))
        assert not set(targets.tolist()) & SPECIAL
        salient = mask_sentence(ids, offsets, cand, np.random.default_rng([seed, k]), MASK,
                                IS_CONT, "salient", max_masks, max_tokens)
        assert len(salient[1]) == len(positions)  # the ablations mask as many wordpieces
        if masker == "salient":
            assert any(np.array_equal(positions, p) for p in fitting)
        elif masker == "random_span":
            assert np.all(np.diff(positions) == 1)
        _check_query(masked, positions, targets, (max_tokens or len(ids)) + 2, max_masks)


# ---------------------------------------------------------------------------------------------
# Masking from a store and its cached spans.


class _DrawnNER:
    """Stands in for the spaCy NER: yields drawn entities for each text, in order."""

    meta = {"name": "drawn", "version": "0"}

    def __init__(self, entities: list[list[tuple[int, int, str]]]):
        self.entities = entities

    def pipe(self, texts, batch_size=64):
        for text, ents in zip(texts, self.entities, strict=True):
            yield types.SimpleNamespace(text=text, ents=[
                types.SimpleNamespace(start_char=s, end_char=e, label_=label)
                for s, e, label in ents
            ])


# An example builds a store: shrinking one takes minutes.
@settings(max_examples=20, phases=[p for p in Phase if p != Phase.shrink])
@given(docs=st.lists(st.tuples(titles, prose), min_size=1, max_size=3), data=st.data(),
       masker=st.sampled_from(MASKERS), max_masks=st.integers(1, 8),
       max_tokens=st.none() | st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_masked_sentences_from_a_store(docs, data, masker, max_masks, max_tokens, seed):
    assume(all(_no_special_strings(t) for _, t in docs))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            build_blocks(docs, f"{tmp}/blocks", TOKENIZER, max_len=40, progress=False)
        except CorpusError:  # no block at all, tested elsewhere
            assume(False)
        store = BlockStore(f"{tmp}/blocks")
        texts = [store.text(i) for i in range(len(store))]
        ner = _DrawnNER([_entities(data, t) for t in texts])
        build_salient_spans(store.directory, ner, progress=False)
        spans = SalientSpans(store)
        assume(spans.offsets[-1] > 0)
        rng = np.random.default_rng(seed)
        pairs = sample_sentences(spans, rng, 6)
        out = mask_sentences(store, spans, pairs, TOKENIZER, rng, masker, max_masks, max_tokens,
                             IS_CONT)
        for (block, sentence), m in zip(pairs, out, strict=True):
            rows = spans.spans(int(block))
            assert len(rows) and sentence in rows[:, 3]  # drawn from a sentence with a span
            a, b = store.sentence_char_spans(int(block))[sentence]
            starts = np.append(store.sentence_token_starts(int(block)),
                               len(store.token_ids(int(block))))
            ids = store.token_ids(int(block))[starts[sentence] : starts[sentence + 1]]
            offsets = np.asarray(TOKENIZER.tokenize_with_offsets([texts[block][a:b]])[1][0],
                                 np.int32).reshape(-1, 2)
            cand = rows[rows[:, 3] == sentence][:, :2] - a
            limit = len(ids) if max_tokens is None else min(len(ids), max_tokens)
            fitting = _fitting(offsets, cand, max_masks, limit)
            assert (m is None) == (not fitting)
            event("masked" if m else "no span fits")
            if m is None:
                continue
            assert (m.block_index, m.sentence_index) == (block, sentence)
            assert len(m.token_ids) == len(ids) and 1 <= len(m.positions) <= max_masks
            assert m.positions[-1] < limit and np.array_equal(m.targets, ids[m.positions])
            assert not set(m.targets.tolist()) & SPECIAL
            if masker == "salient":  # the masked characters lie in one span of this sentence
                lo, hi = offsets[m.positions[0], 0] + a, offsets[m.positions[-1], 1] + a
                assert any(s <= lo and hi <= e for s, e in rows[rows[:, 3] == sentence][:, :2])
