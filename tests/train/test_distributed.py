"""Two CPU processes joined by ``jax.distributed`` on localhost (tests/train/distributed_worker.py):
each reads only its share of the global batch and a psum over both sums all of it; orbax saves and
restores collectively; the refresher splits the corpus's shards between them, process 0 merges and
publishes, and only process 0 logs."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from realm_jax.index.embed import ArrayBlocks, embed_corpus
from realm_jax.index.store import IndexStore
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import EmbedderSpec
from realm_jax.run.checkpoints import mark_done, save_checkpoint
from realm_jax.run.state import TrainState, bert_adamw

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
SPEC = EmbedderSpec(tiny_config().replace(vocab_size=500), proj_size=16)
N_BLOCKS, LEN = 2900, 32  # shards of 500: 6 (the last short), 3 per process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _prepare(directory):
    """A checkpoint with a document tower (step 5, DONE) and a corpus of token arrays."""
    tower = SPEC.module().init(
        jax.random.PRNGKey(5), np.ones((1, 4), np.int32), np.ones((1, 4), np.int32)
    )
    state = TrainState.create({"params": {"embedder": tower["params"]}}, bert_adamw(1e-3, 10, 1))
    save_checkpoint(os.path.join(directory, "ckpt"), 5, state, embedder_spec=SPEC)
    mark_done(os.path.join(directory, "ckpt"))
    rng = np.random.default_rng(0)
    mask = (np.arange(LEN) < rng.integers(4, LEN + 1, N_BLOCKS)[:, None]).astype(np.int32)
    ids = rng.integers(5, 500, (N_BLOCKS, LEN)).astype(np.int32) * mask
    np.savez(os.path.join(directory, "blocks.npz"), input_ids=ids, input_mask=mask)
    return jax.device_get(tower), ArrayBlocks(ids, mask)


def test_two_processes_split_batch_checkpoint_and_refresh(tmp_path):
    tower, blocks = _prepare(str(tmp_path))
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [
        subprocess.Popen([sys.executable, WORKER, str(i), str(port), str(tmp_path)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results, logs = [], []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
        logs.append(err)
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["local_devices"] == 2
               for r in results)
    assert [r["rows"] for r in results] == [[0, 4], [4, 8]]  # disjoint shares, in order
    expected = np.arange(24, dtype=np.float32).reshape(8, 3).sum(0).tolist()
    assert all(r["psum"] == expected for r in results)  # every device sees the global sum
    assert all(r["checkpoint_restored"] for r in results)
    # The refresher: both processes indexed step 5, each embedding half of the 6 shards.
    assert [r["published"] for r in results] == [[5], [5]]
    assert [r["shards_embedded"] for r in results] == [3, 3]
    loaded = IndexStore(str(tmp_path / "index")).load()
    assert loaded.step == 5 and loaded.block_emb.shape == (N_BLOCKS, SPEC.proj_size)
    # Against one process embedding everything (other batches: float32 rounding, 1e-5).
    reference = embed_corpus(SPEC.module(), tower, blocks, max_len=LEN, progress=False)
    np.testing.assert_allclose(np.asarray(loaded.block_emb), reference, rtol=1e-5, atol=1e-5)
    assert not [n for n in os.listdir(tmp_path / "index") if n.startswith(".embed-")]
    # A refresher on process 0 alone embedded all 6 shards and published the same index.
    assert [r["solo_shards"] for r in results] == [6, 0]
    solo = IndexStore(str(tmp_path / "index_solo")).load()
    np.testing.assert_allclose(np.asarray(solo.block_emb), reference, rtol=1e-5, atol=1e-5)
    # Logs: process 0 reports the publish; process 1 writes no INFO line once it has joined (JAX's
    # own "Connecting to JAX distributed service" comes before a process knows its index).
    assert "published index 5" in logs[0]
    info = [x for x in logs[1].splitlines() if x.startswith("INFO") and "Connecting" not in x]
    assert not info and "Connecting" in logs[1], logs[1][-2000:]
    print(f"2 processes x 2 devices: rows {[r['rows'] for r in results]}, psum {expected}, "
          f"shards {[r['shards_embedded'] for r in results]}, index {loaded.step} "
          f"{loaded.block_emb.shape}")
