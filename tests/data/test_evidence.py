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
                    if contains_sequence(mini_store.token_ids(b), span)]
            assert index.blocks_with(span).tolist() == scan
            elsewhere = [b for b in scan if b != block]
            assert index.blocks_with(span, exclude=int(block)).tolist() == elsewhere
            assert index.has_evidence_elsewhere(int(block), span) == bool(elsewhere)
            checked, found_elsewhere = checked + 1, found_elsewhere + bool(elsewhere)
    assert checked == 120 and 0 < found_elsewhere < checked  # both outcomes were exercised
    assert index.blocks_with(np.array([10**6])).tolist() == []  # a wordpiece in no block


def test_min_shared_keeps_the_blocks_that_also_share_the_topic(mini_store):
    index = EvidenceIndex(mini_store)
    rng = np.random.default_rng(1)
    checked = 0
    for block in rng.choice(len(mini_store), 30, replace=False):
        tokens = mini_store.token_ids(int(block))
        span, rest = tokens[10:11], np.concatenate([tokens[:10], tokens[11:]])
        topic = index.rare_tokens(rest, max_df=0.05)
        assert all(index.document_frequency(int(t)) <= 0.05 * len(mini_store) for t in topic)
        anywhere = index.blocks_with(span, exclude=int(block))
        words = np.setdiff1d(topic, span)  # brute force: count each block's shared wordpieces
        shared = {b: len(np.intersect1d(words, mini_store.token_ids(int(b)))) for b in anywhere}
        for min_shared in (1, 2):
            kept = index.blocks_with(span, int(block), topic, min_shared)
            expected = [b for b in anywhere if shared[b] >= min_shared]
            assert kept.tolist() == expected
            checked += len(anywhere) > len(kept)
    assert checked > 0  # the topic requirement did remove some blocks
