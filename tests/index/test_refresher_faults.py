"""SIGKILL the refresher process at random points of embedding, build and publish (10 trials).

After every kill: LATEST names an intact index, a reader sees no damaged one (no warning), and the
watcher, polling throughout, only ever moved forward; the next trial's refresher starts on the
leftovers and carries on, and a last clean run publishes the newest checkpoint.
"""

import logging
import os
import queue
import random
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from realm_jax.index.embed import ArrayBlocks, embed_corpus
from realm_jax.index.store import IndexStore
from realm_jax.index.watcher import IndexWatcher
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import EmbedderSpec
from realm_jax.run.checkpoints import mark_done, save_checkpoint
from realm_jax.run.state import TrainState, bert_adamw

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "refresh.py")
N_BLOCKS, LEN = 9000, 32  # >= 8192 blocks: ScaNN builds a real tree, so "build" takes time
# The phase each trial waits for before killing, and the most it then waits (seconds).
TARGETS = [("embed", 0.3), ("build", 0.03), ("publish:embeddings", 0.005),
           ("publish:searcher", 0.005), ("build", 0.06), ("publish:fsync", 0.01),
           ("publish:rename", 0.002), ("publish:latest", 0.002), ("publish:prune", 0.002),
           ("embed", 0.6)]
SPEC = EmbedderSpec(tiny_config().replace(vocab_size=500), proj_size=16)


_INIT = jax.jit(SPEC.module().init)  # one compilation for every step's tower


def _state(step):
    """A distinct document tower per step, so every index differs."""
    one = np.ones((1, 4), np.int32)
    tower = _INIT(jax.random.PRNGKey(step), one, one)
    params = {"params": {"embedder": tower["params"]}}  # where a Retriever keeps it
    return TrainState.create(params, bert_adamw(1e-3, 10, 1))


def _blocks(path):
    rng = np.random.default_rng(0)
    mask = (np.arange(LEN) < rng.integers(4, LEN + 1, N_BLOCKS)[:, None]).astype(np.int32)
    ids = rng.integers(5, 500, (N_BLOCKS, LEN)).astype(np.int32) * mask
    np.savez(path, input_ids=ids, input_mask=mask)
    return ArrayBlocks(ids, mask)


class Child:
    """experiments/refresh.py in a subprocess, its ``phase`` lines collected by a thread."""

    def __init__(self, ckpt, index, blocks, env, log):
        cmd = [sys.executable, SCRIPT, f"--checkpoint_dir={ckpt}", f"--index_dir={index}",
               f"--blocks={blocks}", "--batch_size=512", f"--max_len={LEN}",
               "--poll_seconds=0.05", "--noprogress"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self.lines = queue.Queue()
        self.last = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.split())
        self.lines.put(None)

    def wait_for(self, phase, step, timeout=60.0):
        deadline = time.monotonic() + timeout
        while (line := self.lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.last = tuple(line[1:])
            if line[1] == phase and int(line[2]) == step:
                return
        raise AssertionError(f"refresher exited ({self.proc.wait()}) before {phase} {step}")


@pytest.fixture
def warnings_seen():
    """Warnings logged by the index package (damaged indexes, failed polls)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("realm_jax.index")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.slow
def test_sigkill_never_exposes_a_half_written_index(tmp_path, warnings_seen):
    ckpt, index, blocks_path = tmp_path / "ckpt", tmp_path / "index", str(tmp_path / "b.npz")
    blocks = _blocks(blocks_path)
    # Two devices are enough for the child (pmap still spans several); compilations are cached.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    store = IndexStore(str(index))
    watcher = IndexWatcher(store, poll_seconds=0.01).start()  # reads all through the kills
    rng = random.Random(0)
    queries = np.random.default_rng(1).normal(size=(4, SPEC.proj_size)).astype(np.float32)
    killed_in, held = [], []
    with open(tmp_path / "child.log", "w") as log:
        for trial, (target, max_delay) in enumerate(TARGETS):
            step = 10 * (trial + 1)
            save_checkpoint(str(ckpt), step, _state(step), embedder_spec=SPEC)
            child = Child(ckpt, index, blocks_path, env, log)
            child.wait_for(target, step)
            time.sleep(rng.uniform(0, max_delay))
            child.proc.kill()
            assert child.proc.wait() == -9
            while (line := child.lines.get()) is not None:  # phases printed before the kill
                child.last = tuple(line[1:])
            killed_in.append(child.last[0])
            latest = store.latest_step()
            assert latest is None or store.verify(latest)["step"] == latest
            loaded = store.load()
            assert (loaded is None) == (latest is None) and (
                latest is None or loaded.step == latest
            )
            watcher.poll_once()
            current = watcher.current(10**6)
            if current is not None:
                held.append(current.step)
                current.searcher.search(queries, 5)  # the index in use still answers
        final = 10 * (len(TARGETS) + 1)
        save_checkpoint(str(ckpt), final, _state(final), embedder_spec=SPEC)
        mark_done(str(ckpt))
        child = Child(ckpt, index, blocks_path, env, log)
        child.wait_for("done", final)
        assert child.proc.wait(timeout=60) == 0
    watcher.stop()
    print(f"\nkilled in: {killed_in}\nindex held after each kill: {held}")
    assert not warnings_seen, [r.getMessage() for r in warnings_seen]
    left = sorted(os.listdir(index))
    kept = sorted(int(name) for name in left if name not in ("LATEST", "towers"))  # no .tmp/.del
    assert "LATEST" in left and len(kept) == len(left) - 2 <= 3 and kept[-1] == final
    # One query tower per kept index, none of a pruned or killed one, no half-written file.
    assert set(os.listdir(os.path.join(index, "towers"))) == {f"{s}.npz" for s in kept}
    assert [s for _, s in watcher.swaps] == sorted({s for _, s in watcher.swaps})
    assert held and held == sorted(held)  # the watcher only ever moved forward
    # The last index holds the final checkpoint's embeddings.
    tower = {"params": _state(final).params["params"]["embedder"]}
    emb = embed_corpus(SPEC.module(), tower, blocks, max_len=LEN, progress=False)
    np.testing.assert_allclose(np.asarray(store.load().block_emb), emb, rtol=1e-5, atol=1e-5)
    phases = {p.split(":")[0] for p in killed_in}
    assert {"embed", "build", "publish"} <= phases, killed_in


def test_a_missing_block_store_is_one_line(tmp_path):
    """The refresher script's user errors are one `error:` line and exit 1 (was a traceback)."""
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    blocks = str(tmp_path / "no_blocks")
    cmd = [sys.executable, SCRIPT, f"--checkpoint_dir={tmp_path / 'ckpt'}",
           f"--index_dir={tmp_path / 'index'}", f"--blocks={blocks}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {blocks}: neither a block store directory nor an .npz file")
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "index")
