"""Refresh pipeline throughput (restore + embed + build + publish) against the bare encoder."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time

import jax
import numpy as np

from realm_jax.assets import MINI_PASSAGES, minilm_dir
from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.convert import load_hf_bert
from realm_jax.data.blocks import BlockStore, build_blocks_from_files
from realm_jax.index.embed import INPUT_KEYS, CorpusEmbedder, length_batches
from realm_jax.index.refresher import RefreshConfig, Refresher
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import EmbedderSpec, init_params
from realm_jax.run.checkpoints import save_checkpoint
from realm_jax.run.state import TrainState, bert_adamw
from realm_jax.utils.devices import replicate


def mini_block_store(directory: str, num_passages: int, max_len: int) -> BlockStore:
    """The first ``num_passages`` mini-corpus passages packed into blocks of <= max_len."""
    corpus = os.path.join(directory, "passages.jsonl")
    with open(MINI_PASSAGES, encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
        dst.writelines(itertools.islice(src, num_passages))
    build_blocks_from_files(corpus, os.path.join(directory, "blocks"), max_len=max_len,
                            progress=False)
    return BlockStore(os.path.join(directory, "blocks"))


def embedder_and_params(model: str) -> tuple[EmbedderSpec, dict]:
    """all-MiniLM-L6-v2 (real weights, new 384 -> 128 projection) or the tiny test BERT."""
    if model == "minilm":
        bert_cfg, bert_params = load_hf_bert(minilm_dir())
    else:
        bert_cfg, bert_params = tiny_config(), None
    spec = EmbedderSpec(bert_cfg, proj_size=128)
    one = np.ones((1, 8), np.int32)
    tower = init_params(spec.module(), jax.random.PRNGKey(0), one, one)
    if bert_params is not None:
        tower = {"params": dict(tower["params"], bert=bert_params["params"])}
    return spec, tower


def bare_encoder_seconds(embed: CorpusEmbedder, tower: dict, blocks, batches) -> float:
    """Seconds of the pmapped encoder alone over pre-staged device batches (no host work)."""
    n_dev = len(embed.devices)
    replicated = replicate(tower, embed.devices)
    staged = []
    for idx, seq_len in batches:
        rows = np.concatenate([idx, np.full(-len(idx) % n_dev, idx[0])])  # as embed pads
        inputs = blocks.block_inputs(rows, seq_len)
        staged.append([jax.device_put(inputs[k].reshape(n_dev, -1, seq_len)) for k in INPUT_KEYS])
    jax.block_until_ready(staged)
    start = time.perf_counter()
    outs = [embed.forward(replicated, *arrays) for arrays in staged]
    jax.block_until_ready(outs)
    return time.perf_counter() - start


def refresh_main(
    model: str, num_passages: int, batch_size: int, max_len: int, searcher: str, rounds: int
) -> dict:
    """Times ``rounds`` refreshes and the bare encoder on the same blocks; prints a table."""
    print(f"machine: {machine_info()}")
    with tempfile.TemporaryDirectory() as tmp:
        blocks = mini_block_store(tmp, num_passages, max_len)
        spec, tower = embedder_and_params(model)
        ckpt = os.path.join(tmp, "ckpt")
        state = TrainState.create({"params": {"embedder": tower["params"]}}, bert_adamw(1e-5, 10))
        config = RefreshConfig(ckpt, os.path.join(tmp, "index"), tmp, searcher,
                               batch_size=batch_size, max_len=max_len, progress=False)
        embed = CorpusEmbedder(spec.module())  # shared with the bare runs: same compilations
        refresher = Refresher(config, blocks=blocks, embed=embed)
        batch = -(-batch_size // len(embed.devices)) * len(embed.devices)
        batches = length_batches(blocks.lengths, batch, max_len)
        padded = [(idx, max_len) for idx, _ in batches]
        bare_bucketed, pipeline = [], []
        for step in range(rounds + 1):  # round 0 compiles every shape
            save_checkpoint(ckpt, step, state, embedder_spec=spec)
            # Back to back, in alternating order: load from other work hits both alike.
            for first in [True, False] if step % 2 else [False, True]:
                if first:
                    bare_bucketed.append(bare_encoder_seconds(embed, tower, blocks, batches))
                else:
                    refresher.refresh(step)
                    pipeline.append(refresher.timings[-1])
            if step <= 1:  # round 0 compiles, round 1 measures
                bare_padded = bare_encoder_seconds(embed, tower, blocks, padded)
        with open(os.path.join(tmp, "index", str(rounds), "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    n = len(blocks)
    median = lambda xs: float(np.median(xs[1:]))
    phases = {p: median([t[p] for t in pipeline]) for p in ("restore", "embed", "build", "publish")}
    total = median([t["total"] for t in pipeline])
    bare = median(bare_bucketed)
    # The ratio of each round's adjacent pair, then the median: robust to load that drifts.
    ratio = median([b / t["total"] for b, t in zip(bare_bucketed, pipeline, strict=True)])
    seconds = {
        "bare encoder, length-bucketed batches (pre-staged)": bare,
        "bare encoder, every batch padded to max_len": bare_padded,
        "refresh: embed only (host batching + transfers)": phases["embed"],
        "refresh: restore + embed + build + publish": total,
    }
    rows = [[name, n / s, bare / s] for name, s in seconds.items()]
    mean_len = float(np.mean(np.asarray(blocks.lengths)))
    print(f"\n{model}, {n} blocks (mean {mean_len:.0f} tokens, max_len {max_len}), batch {batch}, "
          f"{len(embed.devices)} device(s), {searcher} searcher; median of {rounds} rounds after "
          f"a compiling one")
    print(f"pipeline seconds per phase: { {k: round(v, 3) for k, v in phases.items()} }; "
          f"recall {meta['recall']}")
    print(format_table(["path", "blocks/s", "x bare (bucketed)"], rows))
    print(f"median of per-round ratios (pipeline / bare): {ratio:.3f}")
    result = {
        "benchmark": "refresh_speed",
        "model": model,
        "num_blocks": n,
        "bare_blocks_per_s": n / bare,
        "pipeline_blocks_per_s": n / total,
        "ratio": ratio,
        **{f"{k}_s": v for k, v in phases.items()},
    }
    print(json_line(result))
    return result
