"""A refresher killed half-way through its embedding pass, resumed, against an uninterrupted one.

Both runs are ``experiments/refresh.py`` processes over the same checkpoint (a small document
tower, so a 500k-block pass fits in minutes on 2 cores) and the same corpus of token arrays. The
interrupted run is SIGKILLed once half of its shards are on disk, then started again on the same
index directory; it must publish embeddings bit-identical to the uninterrupted run's, having
embedded only the shards it had not finished. Prints a table and a final JSON line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jax
import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.index.store import IndexStore
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import EmbedderSpec
from realm_jax.run.checkpoints import mark_done, save_checkpoint
from realm_jax.run.state import TrainState, bert_adamw

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "experiments", "refresh.py",
)
SPEC = EmbedderSpec(tiny_config().replace(vocab_size=1000), proj_size=128)  # REALM's 128-d
STEP = 100


def prepare(workdir: str, num_blocks: int, length: int, seed: int = 0) -> tuple[str, str]:
    """A finished trainer's checkpoint dir (step 100, DONE) and a corpus .npz; their paths."""
    ckpt, blocks = os.path.join(workdir, "ckpt"), os.path.join(workdir, "blocks.npz")
    ones = np.ones((1, 4), np.int32)
    tower = SPEC.module().init(jax.random.PRNGKey(seed), ones, ones)
    state = TrainState.create({"params": {"embedder": tower["params"]}}, bert_adamw(1e-3, 10, 1))
    save_checkpoint(ckpt, STEP, state, embedder_spec=SPEC)
    mark_done(ckpt)
    rng = np.random.default_rng(seed)
    mask = (np.arange(length) < rng.integers(4, length + 1, num_blocks)[:, None]).astype(np.int32)
    ids = rng.integers(5, 1000, (num_blocks, length)).astype(np.int32) * mask
    np.savez(blocks, input_ids=ids, input_mask=mask)
    return ckpt, blocks


def run_refresher(ckpt: str, index: str, blocks: str, args: list[str], log,
                  kill_after_shards: int | None = None) -> dict:
    """experiments/refresh.py to DONE, or SIGKILLed after ``kill_after_shards`` shards."""
    cmd = [sys.executable, SCRIPT, f"--checkpoint_dir={ckpt}", f"--index_dir={index}",
           f"--blocks={blocks}", "--poll_seconds=0.05", "--noprogress", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    shards, killed = 0, False
    for line in proc.stdout:
        if line.startswith("phase embed:shard"):
            shards += 1
            if kill_after_shards is not None and shards >= kill_after_shards:
                proc.kill()
                killed = True
                break
    code = proc.wait()
    if killed:
        proc.stdout.read()
    elif code != 0:
        raise RuntimeError(f"{SCRIPT} exited with {code}; see {log.name}")
    return {"seconds": time.perf_counter() - start, "shards": shards, "killed": killed}


def refresh_resume_main(num_blocks: int, length: int, shard_rows: int, batch_size: int,
                        emb_dtype: str, workdir: str) -> dict:
    print(f"machine: {machine_info()}")
    os.makedirs(workdir, exist_ok=True)
    ckpt, blocks = prepare(workdir, num_blocks, length)
    args = [f"--shard_rows={shard_rows}", f"--batch_size={batch_size}", f"--max_len={length}",
            f"--emb_dtype={emb_dtype}", "--searcher=exact"]
    num_shards = -(-num_blocks // shard_rows)
    with open(os.path.join(workdir, "refresh.log"), "w") as log:
        clean = run_refresher(ckpt, os.path.join(workdir, "clean"), blocks, args, log)
        index = os.path.join(workdir, "resumed")
        first = run_refresher(ckpt, index, blocks, args, log, kill_after_shards=num_shards // 2)
        leftover = sorted(os.listdir(os.path.join(index, f".embed-{STEP}")))
        second = run_refresher(ckpt, index, blocks, args, log)
    a = IndexStore(os.path.join(workdir, "clean")).load()
    b = IndexStore(index).load()
    identical = bool(
        a.step == b.step == STEP
        and a.block_emb.shape == b.block_emb.shape == (num_blocks, SPEC.proj_size)
        and np.array_equal(np.asarray(a.block_emb).view(np.uint8),
                           np.asarray(b.block_emb).view(np.uint8))
    )
    shards_on_disk = sum(name.startswith("shard-") for name in leftover)
    rows = [
        ["uninterrupted pass", clean["seconds"], clean["shards"], "–"],
        ["killed half-way (SIGKILL)", first["seconds"], first["shards"],
         f"{shards_on_disk} on disk"],
        ["resumed to the end", second["seconds"], second["shards"], f"identical: {identical}"],
    ]
    print(format_table(["run", "seconds", "shards embedded", "result"], rows))
    record = {
        "benchmark": "refresh_resume", "num_blocks": num_blocks, "block_len": length,
        "shard_rows": shard_rows, "num_shards": num_shards, "emb_dtype": emb_dtype,
        "identical": identical, "uninterrupted_s": round(clean["seconds"], 1),
        "killed_after_s": round(first["seconds"], 1), "shards_before_kill": shards_on_disk,
        "resumed_s": round(second["seconds"], 1), "shards_after_resume": second["shards"],
        "blocks_per_s": round(num_blocks / clean["seconds"], 1),
    }
    print(json_line(record))
    return record
