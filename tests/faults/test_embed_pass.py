"""A full disk (a real ENOSPC from a tmpfs) during a sharded embedding pass.

The disk is filled after a shard is written, so that the next shard fails, or after the last, so
that merging them fails. The user gets one OSError line naming the file; the finished shards stay
as they were, no temporary file is left; once there is room again the pass resumes from the
shards on disk and its result is bit-identical to an uninterrupted pass.
"""

import os

import jax
import numpy as np
import pytest

from realm_jax.index.corpus_pass import MERGED, embed_pass, shard_path
from realm_jax.index.embed import ArrayBlocks, CorpusEmbedder
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import init_params
from realm_jax.models.retriever import Embedder
from tests.faults.disk import assert_one_line_enospc, leftovers

N, LEN, SHARD, SHARDS = 1000, 24, 128, 8  # the last shard has 104 blocks


@pytest.fixture(scope="module")
def setup():
    model = Embedder(tiny_config().replace(vocab_size=500), proj_size=16)
    one = np.ones((1, 8), np.int32)
    params = init_params(model, jax.random.PRNGKey(1), one, one)
    rng = np.random.default_rng(2)
    mask = (np.arange(LEN) < rng.integers(3, LEN + 1, N)[:, None]).astype(np.int32)
    ids = rng.integers(5, 500, (N, LEN)).astype(np.int32) * mask
    return CorpusEmbedder(model), params, ArrayBlocks(ids, mask)


def _run(setup, workdir, on_shard=None):
    embed, params, blocks = setup
    done = []

    def record(k):
        done.append(k)
        if on_shard is not None:
            on_shard(k)

    out = embed_pass(embed, params, blocks, workdir, "step 1", batch_size=64, max_len=LEN,
                     shard_rows=SHARD, progress=False, on_shard=record)
    return np.array(out), done


@pytest.fixture(scope="module")
def clean(setup, tmp_path_factory):
    """An uninterrupted pass (on an ordinary disk)."""
    out, done = _run(setup, str(tmp_path_factory.mktemp("clean")))
    assert done == list(range(SHARDS))
    return out


@pytest.mark.parametrize("full_after", [2, SHARDS - 1], ids=["shard", "merge"])
def test_pass_on_a_full_disk_resumes(setup, clean, disk, full_after):
    workdir = os.path.join(disk.path, ".embed-1")
    fill = lambda k: disk.fill() if k == full_after else None
    with pytest.raises(OSError) as caught:
        _run(setup, workdir, on_shard=fill)
    assert_one_line_enospc(caught.value, workdir)
    written = f".{MERGED}.tmp" if full_after == SHARDS - 1 else f".shard-{full_after + 1:05d}.tmp"
    assert caught.value.filename == os.path.join(workdir, written)
    assert leftovers(workdir) == []
    for k in range(SHARDS):  # the finished shards are intact, the others absent
        path = shard_path(workdir, k)
        if k <= full_after:
            rows = clean[k * SHARD : (k + 1) * SHARD]
            np.testing.assert_array_equal(np.load(path), rows)
        else:
            assert not os.path.exists(path)
    assert not os.path.exists(os.path.join(workdir, MERGED))
    disk.make_room()
    resumed, done = _run(setup, workdir)
    assert done == list(range(full_after + 1, SHARDS))  # only what was not on disk
    assert resumed.tobytes() == clean.tobytes()
    assert leftovers(workdir) == []
