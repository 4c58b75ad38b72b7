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


def contains_sequence(tokens: np.ndarray, sequence: np.ndarray) -> bool:
    """Whether ``sequence`` occurs in ``tokens`` as a contiguous run of wordpieces."""
    n = len(sequence)
    if n == 0 or n > len(tokens):
        return False
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(tokens), n)
    return bool(np.any(np.all(windows == np.asarray(sequence), axis=1)))


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

    def blocks_with(self, sequence: np.ndarray, exclude: int | None = None) -> np.ndarray:
        """Ascending ids of the blocks whose wordpieces contain ``sequence`` (not ``exclude``)."""
        sequence = np.asarray(sequence)
        if not len(sequence):
            return np.zeros(0, np.int64)
        lists = sorted((self._postings(int(t)) for t in np.unique(sequence)), key=len)
        found = lists[0]
        for other in lists[1:_CANDIDATE_TOKENS]:
            found = np.intersect1d(found, other, assume_unique=True)
        if exclude is not None:
            found = found[found != exclude]
        keep = [b for b in found if contains_sequence(self.store.token_ids(int(b)), sequence)]
        return np.asarray(keep, np.int64)

    def has_evidence_elsewhere(self, block: int, sequence: np.ndarray) -> bool:
        """Whether a block other than ``block`` contains ``sequence``."""
        return len(self.blocks_with(sequence, exclude=block)) > 0
