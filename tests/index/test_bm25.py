"""BM25 over a block store (bm25s), and as the open-QA pipeline's retriever."""

import numpy as np
import pytest

from realm_jax.data import input_pipeline
from realm_jax.index.bm25 import BM25Searcher
from realm_jax.openqa.answerer import BM25Retriever, OpenQAData
from realm_jax.run import defaults


@pytest.fixture(scope="module")
def store(tmp_path_factory, tokenizer):
    config = defaults.shrink_to_tiny(defaults.openqa_config())
    directory = str(tmp_path_factory.mktemp("blocks") / "blocks")
    return input_pipeline.prepare_blocks(config, directory, tokenizer)


def test_a_block_is_found_by_its_own_words(store):
    bm25 = BM25Searcher.from_store(store)
    assert bm25.num_blocks == len(store)
    blocks = [3, 10, 25]
    questions = [" ".join(store.text(i).split()[:12]) for i in blocks]
    scores, ids = bm25.search_text(questions, k=5)
    assert ids.shape == scores.shape == (3, 5) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[:, 0], blocks)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


def test_no_indexed_word_is_nothing_found(store):
    scores, ids = BM25Searcher.from_store(store).search_text(["the of and", "zzyzx qwvb"], k=3)
    assert np.all(ids == -1) and np.all(scores == 0)
    with pytest.raises(ValueError, match="k=0"):
        BM25Searcher.from_store(store).search_text(["x"], k=0)


def test_bm25_beam_feeds_the_reader_with_zero_retrieval_scores(store, tokenizer):
    config = defaults.shrink_to_tiny(defaults.openqa_config())
    config.openqa.retriever = "bm25"
    zeros = np.broadcast_to(np.zeros(16, np.float32), (len(store), 16))
    retriever = BM25Retriever(BM25Searcher.from_store(store))
    data = OpenQAData(store, tokenizer, config, retriever, zeros)
    words = store.text(7).split()
    rows = [{"question": " ".join(words[:10]), "answers": [" ".join(words[2:4])]}]
    batch, ids = data.batch(rows, params=None, beam=8)
    assert ids[0, 0] == 7 or store.title(int(ids[0, 0])) == store.title(7)
    assert batch["beam_emb"].shape == (1, 8, 16) and not batch["beam_emb"].any()
    assert batch["reader_ids"].shape == (1, config.openqa.reader_beam, config.openqa.reader_len)
    assert batch["beam_correct"][0, 0]  # the block holds the answer
