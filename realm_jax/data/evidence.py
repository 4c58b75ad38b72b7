"""Which blocks of the corpus hold a masked span (evidence for a masked sentence), from the corpus.

REALM never retrieves a query's own block, so a masked sentence teaches the retriever only when
some *other* block holds what was masked. ``EvidenceIndex`` answers that for a wordpiece
sequence: the blocks whose body contains it as a contiguous run. It keeps one posting list per
wordpiece (the blocks it occurs in), intersects the lists of the span's rarest wordpieces and
checks the few blocks left with an exact sequence match. No question or answer is read.
"""

from __future__ import annotations

import numpy as np

from realm_jax.data.blocks import BlockStore

_CANDIDATE_TOKENS = 2  # posting lists intersected before the exact check (the rarest ones)


def first_occurrence(tokens: np.ndarray, sequence: np.ndarray) -> int:
    """Where ``sequence`` first occurs in ``tokens`` as a contiguous run of wordpieces; -1 if
    nowhere (or empty)."""
    n = len(sequence)
    if n == 0 or n > len(tokens):
        return -1
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(tokens), n)
    hits = np.flatnonzero(np.all(windows == np.asarray(sequence), axis=1))
    return int(hits[0]) if len(hits) else -1


def contains_sequence(tokens: np.ndarray, sequence: np.ndarray) -> bool:
    """Whether ``sequence`` occurs in ``tokens`` as a contiguous run of wordpieces."""
    return first_occurrence(tokens, sequence) >= 0


class EvidenceIndex:
    """Blocks of ``store`` that contain a wordpiece sequence (an inverted index of wordpieces)."""

    def __init__(self, store: BlockStore):
        self.store = store
        offsets = store.arrays["token_offsets"]
        tokens = np.asarray(store.arrays["token_ids"])
        block_of = np.repeat(np.arange(len(store), dtype=np.int64), np.diff(offsets))
        pairs = np.unique(tokens.astype(np.int64) * len(store) + block_of)  # (token, block) once
        token, block = np.divmod(pairs, len(store))
        self._tokens, starts = np.unique(token, return_index=True)
        self._starts = np.append(starts, len(pairs))
        self._blocks = block  # sorted by token, then block

    def _postings(self, token: int) -> np.ndarray:
        i = np.searchsorted(self._tokens, token)
        if i == len(self._tokens) or self._tokens[i] != token:
            return np.zeros(0, np.int64)
        return self._blocks[self._starts[i] : self._starts[i + 1]]

    def document_frequency(self, token: int) -> int:
        """How many blocks contain wordpiece ``token``."""
        return len(self._postings(token))

    def rare_tokens(self, tokens: np.ndarray, max_df: float) -> np.ndarray:
        """The distinct wordpieces of ``tokens`` found in at most ``max_df`` of the blocks."""
        limit = max_df * len(self.store)
        rare = [t for t in np.unique(tokens) if self.document_frequency(int(t)) <= limit]
        return np.asarray(rare, np.int64)

    def blocks_with(
        self, sequence: np.ndarray, exclude: int | None = None, topic: np.ndarray | None = None,
        min_shared: int = 0,
    ) -> np.ndarray:
        """Ascending ids of the blocks whose wordpieces contain ``sequence`` (not ``exclude``).

        With ``min_shared`` > 0, only blocks that also hold at least that many of the distinct
        wordpieces ``topic`` (e.g. the masked sentence's rare words, ``rare_tokens``): a year
        or a common name is in many blocks, most of which are not about the sentence at all.
        """
        sequence = np.asarray(sequence)
        if not len(sequence):
            return np.zeros(0, np.int64)
        lists = sorted((self._postings(int(t)) for t in np.unique(sequence)), key=len)
        found = lists[0]
        for other in lists[1:_CANDIDATE_TOKENS]:
            found = np.intersect1d(found, other, assume_unique=True)
        if exclude is not None:
            found = found[found != exclude]
        if min_shared > 0:
            topic = np.setdiff1d(np.asarray(topic if topic is not None else []), sequence)
            shared = np.zeros(len(found), np.int64)
            for t in topic:
                shared += np.isin(found, self._postings(int(t)), assume_unique=True)
            found = found[shared >= min_shared]
        keep = [b for b in found if contains_sequence(self.store.token_ids(int(b)), sequence)]
        return np.asarray(keep, np.int64)

    def topic(self, masked, max_df: float) -> np.ndarray:
        """The rare wordpieces of a masked sentence (``MaskedSentence``) outside its masks."""
        return self.rare_tokens(np.delete(masked.token_ids, masked.positions), max_df)

    def has_evidence_elsewhere(
        self, block: int, sequence: np.ndarray, topic: np.ndarray | None = None,
        min_shared: int = 0,
    ) -> bool:
        """Whether a block other than ``block`` contains ``sequence`` (see ``blocks_with``)."""
        return len(self.blocks_with(sequence, block, topic, min_shared)) > 0
