"""A short check of an accelerator host: its devices, then one figure for each hot path.

Random weights and random token ids (speed does not depend on the values): the BERT encoder's
forward throughput, one pmapped REALM pre-training step, exact MIPS over block embeddings in
bfloat16, and one pmapped ICT step, both steps on every local device. ``size="full"`` uses
MiniLM-L6's shape (6 x 384) and 1M x 128 embeddings; ``size="tiny"`` a 2-layer BERT and 10k rows
(the test suite runs it on CPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.index.exact import ExactSearcher
from realm_jax.models.bert import BertModel, minilm_l6_config, tiny_config
from realm_jax.models.realm import RealmConfig, RealmPretrainModel, init_params
from realm_jax.models.retriever import Retriever
from realm_jax.run.state import TrainState, bert_adamw
from realm_jax.train import ict, realm
from realm_jax.utils.devices import replicate, shard

SIZES = {
    # per-device batch: encoder sequences, REALM examples (each with K candidates), ICT pairs
    "full": dict(bert=minilm_l6_config, seq=128, encode=256, realm=4, k=8, query=64, cand=128,
                 masks=5, ict=64, ict_block=128, rows=1_000_000, queries=1024, rounds=5),
    "tiny": dict(bert=tiny_config, seq=32, encode=8, realm=1, k=3, query=16, cand=24,
                 masks=3, ict=2, ict_block=24, rows=10_000, queries=64, rounds=2),
}


def _devices(n: int) -> str:
    return f"{n} device" + ("s" if n > 1 else "")


def _ids(rng: np.random.Generator, vocab: int, *shape: int) -> np.ndarray:
    ids = rng.integers(1000, vocab, size=shape, dtype=np.int32)  # past [CLS], [SEP], [MASK]
    ids[..., 0] = 101
    return ids


def _timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(seconds of the first call, with compilation; median seconds of ``rounds`` more)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def encoder_throughput(cfg, batch: int, seq: int, rounds: int, rng) -> tuple[float, float]:
    """Sequences per second of the jitted BERT forward on one device."""
    model = BertModel(cfg)
    ids = jnp.asarray(_ids(rng, cfg.vocab_size, batch, seq))
    mask, types = jnp.ones_like(ids), jnp.zeros_like(ids)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids, mask, types)
    forward = jax.jit(lambda p: model.apply(p, ids, mask, types))
    first, seconds = _timed(lambda: forward(params), rounds)
    return first, batch / seconds


def realm_batch(rng, n: int, k: int, query: int, cand: int, masks: int, vocab: int) -> dict:
    """A random REALM batch of ``n`` examples with the keys of ``train/realm.py``."""
    joint = query + cand
    ones = lambda *s: np.ones(s, np.int32)
    positions = np.tile(np.arange(1, masks + 1, dtype=np.int32), (n, 1))
    return {
        "query_ids": _ids(rng, vocab, n, query), "query_mask": ones(n, query),
        "cand_ids": _ids(rng, vocab, n, k, cand), "cand_mask": ones(n, k, cand),
        "cand_type_ids": np.zeros((n, k, cand), np.int32), "cand_valid": np.ones((n, k), bool),
        "joint_ids": _ids(rng, vocab, n, k, joint), "joint_mask": ones(n, k, joint),
        "joint_type_ids": np.zeros((n, k, joint), np.int32), "mlm_positions": positions,
        "mlm_targets": _ids(rng, vocab, n, masks), "mlm_mask": np.ones((n, masks), bool),
    }


def _step_rate(model, p_train_step, batch: dict, example: tuple, rounds: int):
    """(first call seconds, steps per second) of a pmapped train step on ``batch``."""
    params = init_params(model, jax.random.PRNGKey(0), *example)
    state = replicate(TrainState.create(params, bert_adamw(1e-5, 1000, 10)))
    holder, sharded, rng = {"state": state}, shard(batch), replicate(jax.random.PRNGKey(1))

    def step():
        holder["state"], metrics = p_train_step(holder["state"], sharded, rng)
        return metrics["loss"]

    first, seconds = _timed(step, rounds)
    return first, 1.0 / seconds


def device_check_main(size: str = "full") -> dict:
    """Runs every check, prints a table and the final JSON line; returns that record."""
    s = SIZES[size]
    rng = np.random.default_rng(0)
    cfg = s["bert"]()
    n_dev = jax.local_device_count()
    print(f"machine: {machine_info()}")
    print(f"devices: {jax.devices()}")
    rows, record = [], {"benchmark": "device_check", "size": size,
                        "platform": jax.devices()[0].platform, "local_devices": n_dev,
                        "device_kind": jax.devices()[0].device_kind}

    first, seqs = encoder_throughput(cfg, s["encode"], s["seq"], s["rounds"], rng)
    rows.append([f"encoder forward, 1 device, {s['encode']} x {s['seq']} tokens", first,
                 f"{seqs:,.1f} seqs/s"])
    record["encoder_seqs_per_s"] = seqs

    model = RealmPretrainModel(RealmConfig(cfg, proj_size=128))
    n = s["realm"] * n_dev
    batch = realm_batch(rng, n, s["k"], s["query"], s["cand"], s["masks"], cfg.vocab_size)
    keys = ("query_ids", "query_mask", "cand_ids", "cand_mask", "cand_type_ids", "joint_ids",
            "joint_mask", "joint_type_ids", "mlm_positions")
    example = tuple(batch[key][:1] for key in keys)
    first, rate = _step_rate(model, realm.train_step(model), batch, example, s["rounds"])
    rows.append([f"REALM train step, {_devices(n_dev)}, {n} x K {s['k']}", first,
                 f"{rate:.2f} steps/s"])
    record["realm_steps_per_s"] = rate

    emb = rng.standard_normal((s["rows"], 128), dtype=np.float32)
    searcher = ExactSearcher(emb, dtype=jnp.bfloat16)
    queries = rng.standard_normal((s["queries"], 128), dtype=np.float32)
    first, seconds = _timed(lambda: searcher.search(queries, 10), s["rounds"])
    rows.append([f"exact MIPS, {s['rows']:,} x 128 bfloat16, {_devices(n_dev)}, top 10", first,
                 f"{s['queries'] / seconds:,.0f} queries/s"])
    record["mips_queries_per_s"] = s["queries"] / seconds

    retriever = Retriever(cfg, proj_size=128)
    n = s["ict"] * n_dev
    ict_batch = {
        "query_ids": _ids(rng, cfg.vocab_size, n, s["query"]),
        "query_mask": np.ones((n, s["query"]), np.int32),
        "block_ids": _ids(rng, cfg.vocab_size, n, s["ict_block"]),
        "block_mask": np.ones((n, s["ict_block"]), np.int32),
        "block_type_ids": np.zeros((n, s["ict_block"]), np.int32),
    }
    example = (ict_batch["query_ids"][:1], ict_batch["query_mask"][:1],
               ict_batch["block_ids"][:1, None], ict_batch["block_mask"][:1, None],
               ict_batch["block_type_ids"][:1, None])
    first, rate = _step_rate(retriever, ict.train_step(retriever), ict_batch, example,
                             s["rounds"])
    rows.append([f"ICT train step, {_devices(n_dev)}, {n} pairs", first, f"{rate:.2f} steps/s"])
    record["ict_steps_per_s"] = rate

    print(format_table(["check", "first call s (compile)", "figure"], rows))
    print(json_line(record))
    return record
