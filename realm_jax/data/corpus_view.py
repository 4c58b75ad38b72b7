"""A block store plus the blocks corpus edits added, minus the ones they removed.

The knowledge corpus changes without rewriting its (memory-mapped, possibly 13M-block) store:
blocks added by an edit live in small stores of their own, appended after the base rows, and
blocks an edit removed stay as rows but are marked dead, so every block id — a row of the index —
keeps its meaning. ``CorpusView`` reads like a ``BlockStore`` (text, title, wordpieces, model
inputs); retrieval never returns a dead row (``index.delta.DeltaSearcher``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from realm_jax.data.blocks import BlockStore, bert_inputs


class CorpusView:
    """Rows ``[0, N)`` of the base store, then each delta store's rows in order."""

    def __init__(self, base: BlockStore, deltas: Sequence[BlockStore], dead: np.ndarray):
        self.base, self.deltas = base, list(deltas)
        self.stores = [base, *self.deltas]
        self.starts = np.cumsum([0] + [len(s) for s in self.stores])  # [num_stores + 1]
        self.cls_id, self.sep_id, self.max_len = base.cls_id, base.sep_id, base.max_len
        self.meta = base.meta
        self.lengths = np.concatenate([np.asarray(s.lengths) for s in self.stores])
        self.uids = np.concatenate([np.asarray(s.uids) for s in self.stores])
        self.dead = np.zeros(len(self), bool)
        dead = np.asarray(dead, np.int64)
        if len(dead) and (dead.min() < 0 or dead.max() >= len(self)):
            raise ValueError(f"dead block ids outside [0, {len(self)})")
        self.dead[dead] = True

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def num_live(self) -> int:
        return len(self) - int(self.dead.sum())

    def locate(self, i: int) -> tuple[BlockStore, int]:
        """(the store holding block ``i``, its row there)."""
        if not 0 <= i < len(self):
            raise IndexError(f"block {i} out of range [0, {len(self)})")
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.stores[s], i - int(self.starts[s])

    def _call(self, name: str, i: int):
        store, row = self.locate(int(i))
        return getattr(store, name)(row)

    def token_ids(self, i: int) -> np.ndarray:
        return self._call("token_ids", i)

    def title_ids(self, i: int) -> np.ndarray:
        return self._call("title_ids", i)

    def text(self, i: int) -> str:
        return self._call("text", i)

    def title(self, i: int) -> str:
        return self._call("title", i)

    def uid(self, i: int) -> bytes:
        return self._call("uid", i)

    def sentence_token_starts(self, i: int) -> np.ndarray:
        return self._call("sentence_token_starts", i)

    def sentence_char_spans(self, i: int) -> np.ndarray:
        return self._call("sentence_char_spans", i)

    def get(self, i: int):
        return self._call("get", i)

    def block_inputs(self, indices: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
        """``[CLS] title [SEP] body [SEP]`` of blocks ``indices`` -> int32 ``[n, max_len]``."""
        titles = [self.title_ids(int(i)) for i in indices]
        bodies = [self.token_ids(int(i)) for i in indices]
        return bert_inputs(titles, bodies, max_len, self.cls_id, self.sep_id)


def open_view(base_dir: str, delta_dirs: Sequence[str], dead: np.ndarray) -> CorpusView:
    """A view over the store at ``base_dir`` and the delta stores, which must share its vocab."""
    base = BlockStore(base_dir)
    deltas = [BlockStore(d) for d in delta_dirs]
    for d in deltas:
        if d.meta.get("vocab_sha1") != base.meta.get("vocab_sha1"):
            raise ValueError(f"{d.directory}: another vocabulary than {os.fspath(base_dir)}")
    return CorpusView(base, deltas, dead)
