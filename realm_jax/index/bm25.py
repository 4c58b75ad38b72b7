"""BM25 over the block store (bm25s): the sparse retriever of the "BM25 + the same reader" baseline.

Each block is indexed as ``title + " " + body text``; queries and blocks go through bm25s's
tokenizer (lower case, ``\\w\\w+`` tokens, English stop words, no stemmer). k1 = 0.9, b = 0.4 are
Anserini's defaults, which DPR's and ORQA's BM25 baselines used; bm25s's own are 1.5 / 0.75.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np

from realm_jax.data.blocks import BlockStore

K1, B = 0.9, 0.4


def _bm25s():
    """bm25s, imported on first use: its import starts JAX's backend (it picks JAX for top-k when
    installed), which would fix the XLA flags before a training process sets them."""
    return importlib.import_module("bm25s")


class BM25Searcher:
    """Top-k blocks by BM25 score for question texts; ids are block store indices."""

    kind = "bm25"

    def __init__(self, texts: Sequence[str], k1: float = K1, b: float = B):
        if not texts:
            raise ValueError("BM25Searcher: no texts to index")
        self.num_blocks = len(texts)
        bm25s = _bm25s()
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        tokens = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
        self._bm25.index(tokens, show_progress=False)

    @classmethod
    def from_store(cls, store: BlockStore, **kwargs) -> BM25Searcher:
        """Indexes every block of ``store`` (its title and body text)."""
        return cls([f"{store.title(i)} {store.text(i)}" for i in range(len(store))], **kwargs)

    def search_text(self, questions: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """questions [Q] -> (scores [Q, k] float32, ids [Q, k] int32), best first.

        A question with no indexed word scores 0 everywhere; its ids are then -1 (nothing found).
        """
        if not 1 <= k <= self.num_blocks:
            raise ValueError(f"k={k}: expected 1 <= k <= num_blocks={self.num_blocks}")
        tokens = _bm25s().tokenize(
            list(questions), stopwords="en", show_progress=False, return_ids=False
        )
        ids, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        ids = np.where(scores > 0, ids, -1).astype(np.int32)
        return scores.astype(np.float32), ids
