"""Inverse Cloze Task batches (ORQA's retriever warm start) from a block store.

As ORQA's ``ict_dataset.py``: the query is one sentence of a block, drawn uniformly, as
``[CLS] sentence [SEP]``; its positive is the block ``[CLS] title [SEP] body [SEP]`` with that
sentence removed with probability ``remove_prob`` (0.9), else left in so the retriever also learns
word matching. A removal drawn for a one-sentence block would leave an empty body; ORQA filters
such examples out, and so do we (the block is drawn again). Blocks within a batch are distinct:
every other block of the global batch is a negative.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from realm_jax.data.blocks import BlockStore, bert_inputs


def ict_batch(
    store: BlockStore,
    blocks: Sequence[int],
    sentences: Sequence[int],
    remove: Sequence[bool],
    query_len: int = 64,
    block_len: int = 288,
) -> dict[str, np.ndarray]:
    """Query sentence ``sentences[i]`` of block ``blocks[i]`` and its positive -> int32 batch.

    Returns ``query_ids, query_mask [B, query_len]`` and ``block_ids, block_mask,
    block_type_ids [B, block_len]``, the ICT step's keys.
    """
    queries, titles, bodies = [], [], []
    for block, sentence, drop in zip(blocks, sentences, remove, strict=True):
        ids = store.token_ids(int(block))
        bounds = np.append(store.sentence_token_starts(int(block)), len(ids))
        start, end = bounds[sentence], bounds[sentence + 1]
        queries.append(ids[start:end])
        bodies.append(np.concatenate([ids[:start], ids[end:]]) if drop else ids)
        titles.append(store.title_ids(int(block)))
    query = bert_inputs(queries, None, query_len, store.cls_id, store.sep_id)
    block = bert_inputs(titles, bodies, block_len, store.cls_id, store.sep_id)
    return {
        "query_ids": query["input_ids"],
        "query_mask": query["input_mask"],
        "block_ids": block["input_ids"],
        "block_mask": block["input_mask"],
        "block_type_ids": block["token_type_ids"],
    }


def _num_sentences(store: BlockStore) -> np.ndarray:
    return np.diff(np.asarray(store.arrays["sentence_offsets"]))  # [num_blocks]


def ict_batches(
    store: BlockStore,
    batch_size: int,
    seed: int = 0,
    remove_prob: float = 0.9,
    query_len: int = 64,
    block_len: int = 288,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless ICT batches over shuffled epochs of the blocks (each block at most once per epoch).

    The remainder of an epoch is dropped, so no block is ever twice in one batch.
    """
    num_sentences = _num_sentences(store)
    usable = np.sum(num_sentences > 1) + (1 - remove_prob) * np.sum(num_sentences == 1)
    if batch_size > usable:
        raise ValueError(f"batch_size {batch_size} exceeds the ~{usable:.0f} usable blocks")
    rng = np.random.default_rng(seed)
    while True:
        pending: list[tuple[int, int, bool]] = []
        for block in rng.permutation(len(store)):
            n = int(num_sentences[block])
            remove = bool(rng.random() < remove_prob)
            if n == 0 or (remove and n == 1):  # ORQA's keep_example filter
                continue
            pending.append((int(block), int(rng.integers(n)), remove))
            if len(pending) == batch_size:
                blocks, sentences, removes = zip(*pending, strict=True)
                pending = []
                yield ict_batch(store, blocks, sentences, removes, query_len, block_len)
