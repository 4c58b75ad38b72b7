"""Sentences -> blocks: ORQA's greedy packing rule, pure functions over tokenized sentences.

A document's sentences are added to the current block while ``3 + len(title) + len(block) +
len(sentence) <= max_len`` (room for ``[CLS] title [SEP] body [SEP]``; ORQA's
``wiki_preprocessor.py``), else a new block starts. The body text is the document's own text from
the block's first sentence to its last (ORQA joins the sentences with one space, which is the same
text when sentences are single-spaced; keeping the original also keeps text the splitter cut
without a space, like ``it.":54``). A sentence longer than the budget is cut at the last whole word
that fits (ORQA keeps it over-long) and counted in ``stats["truncated_sentences"]``.

Sentences come from spaCy's rule-based ``sentencizer`` on spaCy's English tokenizer (no model):
deterministic, fast (~0.5 ms a passage), and the tokenizer's exceptions keep "U.S.", "Dr." and
"3.5" whole, where a punctuation regex would split them.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

UID_SEPARATOR = " <sep> "
_OPENERS = "([{"


def block_uid(title: str, body: str) -> bytes:
    """REALM's document uid: SHA1 of ``"title <sep> body"`` (20 bytes)."""
    return hashlib.sha1(f"{title}{UID_SEPARATOR}{body}".encode()).digest()


class SentenceSplitter:
    """spaCy's rule-based sentencizer over spaCy's English tokenizer (no statistical model)."""

    def __init__(self):
        import spacy

        self._nlp = spacy.blank("en")
        self._nlp.add_pipe("sentencizer")
        self._nlp.max_length = 10**8  # blocks are short, but a long document must not fail

    def split(self, texts: Sequence[str], batch_size: int = 256) -> list[list[tuple[int, int]]]:
        """Per text, its sentences as ``(start, end)`` character spans without outer whitespace."""
        out = []
        for doc in self._nlp.pipe(texts, batch_size=batch_size):
            bounds = [sent.start_char for sent in doc.sents][1:]
            # The sentencizer leaves an opening bracket after ". " in the sentence before it.
            bounds = [_before_openers(doc.text, b) for b in bounds]
            spans = []
            for start, end in zip([0, *bounds], [*bounds, len(doc.text)], strict=True):
                piece = doc.text[start:end]
                if piece.strip():
                    start += len(piece) - len(piece.lstrip())
                    spans.append((start, start + len(piece.strip())))
            out.append(spans)
        return out


def _before_openers(text: str, boundary: int) -> int:
    """Moves a sentence boundary back over opening brackets (and spaces) that end the sentence."""
    while True:
        end = boundary
        while end > 0 and text[end - 1].isspace():
            end -= 1
        if end == 0 or text[end - 1] not in _OPENERS:
            return boundary
        boundary = end - 1


def continuation_table(tokenizer) -> np.ndarray:
    """``[vocab]`` bool: whether each wordpiece continues a word (starts with "##")."""
    tokens = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    return np.array([t.startswith("##") for t in tokens], bool)


def pack_sentences(title_len: int, sentence_lens: Sequence[int], max_len: int) -> list[list[int]]:
    """ORQA's greedy rule -> groups of sentence indices, one per block (empty sentences dropped)."""
    groups: list[list[int]] = []
    current: list[int] = []
    count = 0
    for i, n in enumerate(sentence_lens):
        if n == 0:
            continue
        if current and 3 + title_len + count + n > max_len:
            groups.append(current)
            current, count = [], 0
        current.append(i)
        count += n
    if current:
        groups.append(current)
    return groups


@dataclasses.dataclass(frozen=True)
class Block:
    """One block: ``[CLS] title_ids [SEP] token_ids [SEP]`` and the text it came from."""

    token_ids: np.ndarray  # [body_len] int32
    title_ids: np.ndarray  # [title_len] int32
    title: str
    text: str  # body text; sentence_char_spans index into it
    uid: bytes
    sentence_token_starts: np.ndarray  # [num_sentences] into token_ids
    sentence_char_spans: np.ndarray  # [num_sentences, 2] (start, end) into text
    doc_index: int

    def sentences(self) -> list[str]:
        return [self.text[s:e] for s, e in self.sentence_char_spans]


def whole_word_cut(ids: Sequence[int], room: int, is_continuation: np.ndarray) -> int:
    """How many wordpieces of an over-long sentence to keep so it ends on a whole word."""
    keep = room
    while keep > 1 and is_continuation[ids[keep]]:
        keep -= 1
    return keep


def doc_blocks(
    title: str,
    text: str,
    title_ids: Sequence[int],
    sentences: Sequence[tuple[tuple[int, int], Sequence[int], Sequence[tuple[int, int]]]],
    max_len: int,
    is_continuation: np.ndarray,  # [vocab] bool: the wordpiece starts with "##"
    doc_index: int = 0,
    prepacked: bool = False,
    stats: collections.Counter | None = None,
) -> list[Block]:
    """Blocks of one document from its sentences' ``(char span, wordpieces, wordpiece offsets)``.

    ``prepacked``: the document is already one block (ORQA's ``blocks.tfr``): it is kept whole,
    with its exact text (so its uid is the original's) unless it had to be cut to ``max_len``.
    """
    stats = collections.Counter() if stats is None else stats
    budget = max_len - 3 - len(title_ids)
    sent_spans = [span for span, _, _ in sentences]
    sent_ids = [ids for _, ids, _ in sentences]
    sent_offsets = [offsets for _, _, offsets in sentences]
    lens = [len(ids) for ids in sent_ids]
    if prepacked:  # an ORQA block is one block, whatever its length
        groups = [[i for i, n in enumerate(lens) if n]]
    else:
        groups = pack_sentences(len(title_ids), lens, max_len)
    blocks = []
    for group in groups:
        if not group:
            continue
        spans, ids, starts = [], [], []  # spans: absolute (start, end) in the document text
        changed = False
        for i in group:
            (s, e), tokens = sent_spans[i], list(sent_ids[i])
            room = budget - len(ids)
            if room <= 0:  # only a pre-packed block can be full before its last sentence
                stats["dropped_sentences"] += 1
                changed = True
                continue
            if len(tokens) > room:
                keep = whole_word_cut(tokens, room, is_continuation)
                tokens = tokens[:keep]
                e = s + sent_offsets[i][keep - 1][1]
                stats["truncated_sentences"] += 1
                changed = True
            spans.append((s, e))
            starts.append(len(ids))
            ids.extend(tokens)
        if prepacked and not changed:
            body, offset = text, 0  # ORQA's exact block text, so its uid is the original's
        else:  # the document's own text from the first sentence to the last, spaces and all
            body, offset = text[spans[0][0] : spans[-1][1]], spans[0][0]
        spans = [(s - offset, e - offset) for s, e in spans]
        blocks.append(
            Block(
                token_ids=np.asarray(ids, np.int32),
                title_ids=np.asarray(title_ids, np.int32),
                title=title,
                text=body,
                uid=block_uid(title, body),
                sentence_token_starts=np.asarray(starts, np.int32),
                sentence_char_spans=np.asarray(spans, np.int32).reshape(-1, 2),
                doc_index=doc_index,
            )
        )
    return blocks
