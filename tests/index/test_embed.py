"""Corpus embedding: length buckets, corpus order, equality with a direct forward pass."""

import jax
import numpy as np
import pytest

from realm_jax.index.embed import ArrayBlocks, CorpusEmbedder, embed_corpus, length_batches
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import init_params
from realm_jax.models.retriever import Embedder
from realm_jax.utils.turns import Turns


def random_blocks(n, max_len, seed=0, vocab=1000):
    """n blocks of 4..max_len real tokens (type 1 after the 4th), as ArrayBlocks."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, max_len + 1, n)
    mask = (np.arange(max_len) < lengths[:, None]).astype(np.int32)
    ids = rng.integers(5, vocab, (n, max_len)).astype(np.int32) * mask
    return ArrayBlocks(ids, mask, (np.arange(max_len) >= 4) * mask)


@pytest.fixture(scope="module")
def tiny_embedder():
    model = Embedder(tiny_config().replace(vocab_size=1000), proj_size=16)
    one = np.ones((1, 8), np.int32)
    return model, init_params(model, jax.random.PRNGKey(0), one, one)


def test_length_batches_cover_each_block_once():
    lengths = np.array([5, 70, 33, 1, 64, 65, 200])
    batches = length_batches(lengths, batch_size=3, max_len=100, pad_multiple=32)
    assert [len(i) for i, _ in batches] == [3, 3, 1]
    assert sorted(np.concatenate([i for i, _ in batches])) == list(range(7))
    assert [seq for _, seq in batches] == [100, 64, 32]  # 200 capped at max_len
    for idx, seq in batches:
        assert np.minimum(lengths[idx], 100).max() <= seq


EMBEDDERS = {}


@pytest.mark.parametrize("dtype", [np.float32, "bfloat16"])
def test_embed_corpus_matches_direct_forward(num_devices, tiny_embedder, dtype):
    model, params = tiny_embedder
    blocks = random_blocks(101, 40)  # 101: the last batch is padded with repeats
    seen = []
    embed = EMBEDDERS.setdefault("8 devices", CorpusEmbedder(model))  # compile once for both
    emb = embed(
        params, blocks, batch_size=20, max_len=40, dtype=dtype, progress=False,
        on_batch=seen.append,
    )
    a = blocks.arrays
    ref = model.apply(params, a["input_ids"], a["input_mask"], a["token_type_ids"])
    assert emb.shape == (101, 16) and emb.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-2
    np.testing.assert_allclose(emb.astype(np.float32), np.asarray(ref), rtol=tol, atol=tol)
    assert seen[-1] == 101 and len(seen) == 5  # batch 20 -> 24 (8 devices): 5 batches


TRACES = []  # one entry per trace of CountingEmbedder: compilations of the forward pass


class CountingEmbedder(Embedder):
    def __call__(self, *args, **kwargs):
        TRACES.append(args[0].shape)
        return super().__call__(*args, **kwargs)


def test_corpus_embedder_reuses_its_compilations(tiny_embedder):
    model, params = tiny_embedder
    traces = TRACES
    traces.clear()
    counting = CountingEmbedder(model.config, model.proj_size)
    embed = CorpusEmbedder(counting, jax.local_devices()[:2])
    blocks = random_blocks(30, 16, seed=1)
    first = embed(params, blocks, batch_size=8, max_len=16, pad_multiple=8, progress=False)
    assert len(traces) == 2  # two padded lengths: 16 and 8
    again = embed(params, blocks, batch_size=8, max_len=16, pad_multiple=8, progress=False)
    np.testing.assert_array_equal(again, first)
    assert len(traces) == 2


def test_embed_corpus_one_off(tiny_embedder):
    model, params = tiny_embedder
    blocks = random_blocks(5, 8, seed=2)
    emb = embed_corpus(model, params, blocks, batch_size=8, max_len=8, progress=False)
    a = blocks.arrays
    ref = model.apply(params, a["input_ids"], a["input_mask"], a["token_type_ids"])
    np.testing.assert_allclose(emb, np.asarray(ref), rtol=1e-5, atol=1e-5)


class _CountingTurns(Turns):
    """Turns that record, for each turn, how many were held at once (must always be 1)."""

    def __init__(self):
        super().__init__()
        self.held, self.max_held, self.count = 0, 0, 0

    def __enter__(self):
        super().__enter__()
        self.held += 1
        self.count += 1
        self.max_held = max(self.max_held, self.held)
        return self

    def __exit__(self, *exc):
        self.held -= 1
        super().__exit__(*exc)


def test_batches_in_turns_give_the_same_embeddings(tiny_embedder):
    """With ``turns`` (the refresher thread beside a train step) each batch is computed and
    fetched inside one turn: the same rows, bit for bit, one turn a batch, the same progress."""
    model, params = tiny_embedder
    blocks = random_blocks(30, 16, seed=3)
    turns = _CountingTurns()
    runs = {}
    for shared in (None, turns):
        seen = []
        embed = CorpusEmbedder(model, jax.local_devices()[:2], turns=shared)
        runs[shared is None] = embed(params, blocks, batch_size=8, max_len=16, progress=False,
                                     on_batch=seen.append), seen
    np.testing.assert_array_equal(runs[False][0], runs[True][0])
    assert runs[False][1] == runs[True][1] == [8, 16, 24, 30]
    assert (turns.count, turns.max_held, turns.held) == (4, 1, 0)
