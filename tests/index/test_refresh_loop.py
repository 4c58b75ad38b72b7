"""A tiny REALM run with the refresher in a separate process: refreshes reach the trainer between
steps, staleness stays within its bound, and no step waits on the index."""

import os

import jax
import numpy as np
import pytest

from realm_jax.data.blocks import BlockStore, build_blocks_from_files
from realm_jax.data.salient_spans import MaskedSentence
from realm_jax.index.refresher import RefreshConfig, start_refresher
from realm_jax.index.store import IndexStore
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import RealmConfig, RealmPretrainModel, init_params
from realm_jax.train.realm_loop import RealmLoopConfig, train_realm

LOOP = RealmLoopConfig(
    num_steps=18,
    checkpoint_every=3,
    max_staleness=12,
    min_step_seconds=0.2,
    cand_len=48,
    index_poll_seconds=0.05,
)


@pytest.fixture(scope="module")
def blocks(tmp_path_factory, tokenizer):
    out = tmp_path_factory.mktemp("blocks") / "store"
    corpus = os.path.join(os.path.dirname(__file__), "..", "testdata", "passages32.jsonl")
    build_blocks_from_files(corpus, str(out), max_len=LOOP.cand_len, tokenizer=tokenizer,
                            progress=False)  # fmt: skip
    return BlockStore(out)


def masked_queries(blocks, mask_id, n=16):
    """One query per block: its first 10 wordpieces with the 4th masked."""
    out = []
    for i in range(n):
        tokens = np.array(blocks.token_ids(i)[:10], np.int32)
        target = tokens[3]
        tokens[3] = mask_id
        out.append(MaskedSentence(i, 0, tokens, np.array([3], np.int32), np.array([target])))
    return out


def test_refresher_process_feeds_the_trainer(tmp_path, blocks, tokenizer, num_devices):
    cfg = RealmConfig(tiny_config(), proj_size=16)
    model = RealmPretrainModel(cfg)
    q = np.ones((1, LOOP.query_len), np.int32)
    c = np.ones((1, LOOP.num_candidates, LOOP.cand_len), np.int32)
    j = np.ones((1, LOOP.num_candidates, LOOP.query_len + LOOP.cand_len), np.int32)
    params = init_params(model, jax.random.PRNGKey(0), q, q, c, c, c, j, j, j, q[:, :2])
    ckpt_dir, index_dir = str(tmp_path / "ckpt"), str(tmp_path / "index")
    refresh = RefreshConfig(ckpt_dir, index_dir, blocks.directory, searcher="scann",
                            batch_size=64, max_len=LOOP.cand_len, poll_seconds=0.1,
                            progress=False)  # fmt: skip
    refresher = start_refresher(refresh, mode="process")
    try:
        queries = masked_queries(blocks, tokenizer.mask_id)
        history = train_realm(LOOP, model, params, blocks, queries, ckpt_dir, index_dir,
                              on_step=lambda r: None)  # fmt: skip
        refresher.join(timeout=60)  # the DONE marker ends it after the last checkpoint
        assert refresher.worker.exitcode == 0
    finally:
        refresher.stop()
    print("\nstep index_step staleness index_wait_ms step_s loss")
    for r in history:
        print(f"{r['step']:4d} {r['index_step']:10d} {r['staleness']:9d} "
              f"{r['index_wait_ms']:13.3f} {r['step_seconds']:6.2f} {r['loss']:.3f}")  # fmt: skip
    swaps = [(r["step"], r["index_step"]) for i, r in enumerate(history)
             if i == 0 or r["index_step"] != history[i - 1]["index_step"]]  # fmt: skip
    swapped = sorted({r["index_step"] for r in history} - {0})
    staleness = [r["staleness"] for r in history]
    waits = [r["index_wait_ms"] for r in history]
    print(
        f"swaps {swaps}; max staleness {max(staleness)} (bound {LOOP.max_staleness}); "
        f"max index wait {max(waits):.3f} ms; final index {IndexStore(index_dir).latest_step()}"
    )
    assert len(swapped) >= 3, swaps
    assert max(staleness) <= LOOP.max_staleness
    assert max(waits) < 5.0  # a reference swap, never a load
    assert IndexStore(index_dir).latest_step() == LOOP.num_steps  # the last checkpoint indexed
    assert all(np.isfinite(r["loss"]) for r in history)
