"""The sharded embedding pass: resuming after a failure, starting over on another pass, and the
merged result against a direct forward pass (the killed-process version is test_refresh_resume)."""

import logging
import os

import jax
import numpy as np
import pytest

from realm_jax.index.corpus_pass import MERGED, embed_pass, shard_path
from realm_jax.index.embed import ArrayBlocks, CorpusEmbedder
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import init_params
from realm_jax.models.retriever import Embedder

N, LEN, SHARD = 1000, 24, 128  # 8 shards, the last of 104 blocks


@pytest.fixture(scope="module")
def setup():
    model = Embedder(tiny_config().replace(vocab_size=500), proj_size=16)
    one = np.ones((1, 8), np.int32)
    params = init_params(model, jax.random.PRNGKey(1), one, one)
    rng = np.random.default_rng(2)
    mask = (np.arange(LEN) < rng.integers(3, LEN + 1, N)[:, None]).astype(np.int32)
    ids = rng.integers(5, 500, (N, LEN)).astype(np.int32) * mask
    return CorpusEmbedder(model), params, ArrayBlocks(ids, mask)


class Crash(Exception):
    pass


def _run(setup, workdir, tag="step 1", dtype="float32", crash_after=None):
    embed, params, blocks = setup
    done = []

    def on_shard(k):
        done.append(k)
        if crash_after is not None and len(done) == crash_after:
            raise Crash

    out = embed_pass(embed, params, blocks, str(workdir), tag, batch_size=64, max_len=LEN,
                     dtype=dtype, shard_rows=SHARD, progress=False, on_shard=on_shard)
    return out, done


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resumed_pass_is_bit_identical(setup, tmp_path, dtype, caplog):
    clean, done = _run(setup, tmp_path / "clean", dtype=dtype)
    assert done == list(range(8)) and clean.shape == (N, 16)
    with pytest.raises(Crash):
        _run(setup, tmp_path / "crashed", dtype=dtype, crash_after=3)
    (tmp_path / "crashed" / ".shard-00003.tmp").write_bytes(b"half a shard")  # a killed write
    with caplog.at_level(logging.INFO, logger="realm_jax.index.corpus_pass"):
        resumed, done = _run(setup, tmp_path / "crashed", dtype=dtype)
    assert done == [3, 4, 5, 6, 7]  # only the shards not on disk
    assert "resuming, 3 of 8 shards already embedded" in caplog.text
    assert np.array_equal(np.asarray(resumed).view(np.uint8), np.asarray(clean).view(np.uint8))


def test_merged_pass_equals_a_direct_forward(setup, tmp_path):
    embed, params, blocks = setup
    out, _ = _run(setup, tmp_path)
    a = blocks.arrays
    ref = embed.embedder.apply(params, a["input_ids"], a["input_mask"], a["token_type_ids"])
    # Other batch shapes than one forward over all rows: float32 rounding, 1e-5.
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert isinstance(out, np.memmap) and os.path.basename(out.filename) == MERGED


def test_another_pass_in_the_directory_starts_over(setup, tmp_path, caplog):
    _run(setup, tmp_path, tag="step 1", crash_after=None)
    assert os.path.exists(shard_path(str(tmp_path), 0))
    with caplog.at_level(logging.WARNING, logger="realm_jax.index.corpus_pass"):
        out, done = _run(setup, tmp_path, tag="step 2")  # other params: nothing is reusable
    assert done == list(range(8)) and "starting over" in caplog.text
    assert out.shape == (N, 16)
