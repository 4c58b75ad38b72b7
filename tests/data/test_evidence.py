"""EvidenceIndex: the blocks holding a wordpiece sequence equal a brute-force scan of the corpus."""

import numpy as np

from realm_jax.data.evidence import EvidenceIndex, contains_sequence


def test_contains_sequence():
    tokens = np.array([5, 6, 7, 6, 7, 8])
    assert contains_sequence(tokens, np.array([6, 7, 8]))
    assert contains_sequence(tokens, np.array([5]))
    assert not contains_sequence(tokens, np.array([7, 6, 8]))  # every token, not this run
    assert not contains_sequence(tokens, np.array([], np.int64))
    assert not contains_sequence(tokens[:2], np.array([5, 6, 7]))


def test_blocks_with_equals_a_scan_of_every_block(mini_store):
    index = EvidenceIndex(mini_store)
    rng = np.random.default_rng(0)
    checked = found_elsewhere = 0
    for block in rng.choice(len(mini_store), 40, replace=False):
        tokens = mini_store.token_ids(int(block))
        for length in (1, 2, 4):
            start = int(rng.integers(0, len(tokens) - length))
            span = tokens[start : start + length]
            scan = [b for b in range(len(mini_store))
                    if contains_sequence(mini_store.token_ids(b), span)]  # fmt: skip
            assert index.blocks_with(span).tolist() == scan
            elsewhere = [b for b in scan if b != block]
            assert index.blocks_with(span, exclude=int(block)).tolist() == elsewhere
            assert index.has_evidence_elsewhere(int(block), span) == bool(elsewhere)
            checked, found_elsewhere = checked + 1, found_elsewhere + bool(elsewhere)
    assert checked == 120 and 0 < found_elsewhere < checked  # both outcomes were exercised
    assert index.blocks_with(np.array([10**6])).tolist() == []  # a wordpiece in no block
