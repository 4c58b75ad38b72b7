"""Embedding a real corpus: our CorpusEmbedder against PyTorch as a user would run it.

Both sides embed every block of the packaged mini corpus with the same document tower
(all-MiniLM-L6-v2, pooled output -> dense 128 -> LayerNorm, one projection init), in batches of
blocks sorted by length. PyTorch pads each batch to its longest block (dynamic padding, as
transformers' ``DataCollatorWithPadding`` does); ours pads each batch up to a multiple of 32 so a
handful of shapes compile once. Both build their inputs from the block store inside the timed pass.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from realm_jax.assets import minilm_dir
from realm_jax.benchmarks.common import format_table, json_line, load_average, machine_info
from realm_jax.benchmarks.refresh_speed import embedder_and_params, mini_block_store
from realm_jax.data.questions import read_questions
from realm_jax.data.tokenization import Tokenizer
from realm_jax.index.embed import ArrayBlocks, CorpusEmbedder, length_batches


class TorchTower:
    """transformers' PyTorch BertModel + our projection and LayerNorm, same weights as ours."""

    def __init__(self, tower: dict, threads: int):
        import torch
        from transformers import BertModel as TorchBertModel

        torch.set_num_threads(threads)
        self.torch = torch
        self.bert = TorchBertModel.from_pretrained(minilm_dir()).eval()
        dense, norm = tower["params"]["dense"], tower["params"]["LayerNorm"]
        self.proj = torch.nn.Linear(*np.shape(dense["kernel"]))
        self.norm = torch.nn.LayerNorm(np.shape(norm["scale"])[0], eps=1e-12)
        with torch.no_grad():
            for target, value in ((self.proj.weight, np.asarray(dense["kernel"]).T),
                                  (self.proj.bias, dense["bias"]),
                                  (self.norm.weight, norm["scale"]),
                                  (self.norm.bias, norm["bias"])):
                target.copy_(torch.from_numpy(np.array(value, np.float32)))
        self.attention = self.bert.config._attn_implementation

    def __call__(self, blocks, batches) -> np.ndarray:
        """Every block of ``batches`` [(indices, padded length)] -> [N, 128] float32."""
        torch = self.torch
        out = np.empty((len(blocks), self.proj.out_features), np.float32)
        with torch.inference_mode():
            for idx, seq_len in batches:
                inputs = blocks.block_inputs(idx, seq_len)
                pooled = self.bert(
                    input_ids=torch.from_numpy(inputs["input_ids"].astype(np.int64)),
                    attention_mask=torch.from_numpy(inputs["input_mask"].astype(np.int64)),
                    token_type_ids=torch.from_numpy(inputs["token_type_ids"].astype(np.int64)),
                ).pooler_output
                out[idx] = self.norm(self.proj(pooled)).numpy()
        return out


def dynamic_batches(lengths: np.ndarray, batch_size: int, max_len: int):
    """Length-sorted batches, each padded to its own longest block (pad multiple 1)."""
    return length_batches(lengths, batch_size, max_len, pad_multiple=1)


def embed_questions(embed: CorpusEmbedder, tower: dict, texts: list[str], seq_len: int):
    """Question texts -> [Q, 128] with the same (shared) tower, for the MIPS benchmark."""
    enc = Tokenizer().encode(texts, seq_len)
    return embed(tower, ArrayBlocks(enc["input_ids"], enc["input_mask"]), max_len=seq_len,
                 progress=False)


def corpus_embedding_main(
    num_passages: int | None,
    batch_size: int,
    max_len: int,
    rounds: int,
    torch_threads: int,
    save_dir: str | None,
) -> dict:
    """Times ``rounds`` whole passes of each side after a warm-up pass; prints, returns the JSON."""
    print(f"machine: {machine_info()}", flush=True)
    spec, tower = embedder_and_params("minilm")
    embed = CorpusEmbedder(spec.module())
    torch_tower = TorchTower(tower, torch_threads)
    with tempfile.TemporaryDirectory() as tmp:
        blocks = mini_block_store(tmp, num_passages or 10**9, max_len)
        lengths = np.minimum(np.asarray(blocks.lengths), max_len)
        n = len(blocks)
        print(f"{n} blocks of the mini corpus, mean {lengths.mean():.1f} tokens (max {max_len})",
              flush=True)
        batches = dynamic_batches(np.asarray(blocks.lengths), batch_size, max_len)
        ours_kw = dict(batch_size=batch_size, max_len=max_len, progress=False)
        start = time.perf_counter()
        _warm_up(embed, tower, blocks, batch_size, max_len)
        print(f"compiled our {batch_size}-block shapes in {time.perf_counter() - start:.1f} s",
              flush=True)
        torch_tower(blocks, batches[:1])
        ours_s, torch_s = [], []
        for r in range(rounds):  # alternating order: load from other work hits both alike
            for side in ("ours", "torch") if r % 2 == 0 else ("torch", "ours"):
                start = time.perf_counter()
                if side == "ours":
                    ours_out = embed(tower, blocks, **ours_kw)
                else:
                    torch_out = torch_tower(blocks, batches)
                seconds = time.perf_counter() - start
                (ours_s if side == "ours" else torch_s).append(seconds)
                print(f"  round {r} {side}: {n / seconds:.1f} blocks/s", flush=True)
        max_diff = float(np.abs(ours_out - torch_out).max())
        if save_dir:
            _save_embeddings(save_dir, embed, tower, ours_out)
    ours = n / float(np.median(ours_s))
    theirs = n / float(np.median(torch_s))
    ours_batches = length_batches(lengths, batch_size, max_len)  # as CorpusEmbedder pads
    padded_ours = sum(len(i) * s for i, s in ours_batches)
    rows = [
        ["realm_jax CorpusEmbedder (jit, pad to x32)", ours, ours / theirs, padded_ours / n],
        [f"torch BertModel ({torch_tower.attention}, {torch_threads} threads, dynamic pad)",
         theirs, 1.0, sum(len(i) * s for i, s in batches) / n],
    ]
    print(f"\n{n} blocks, batch {batch_size}, float32, median of {rounds} whole passes after "
          f"compiling (ours) / one warm-up batch (torch); max |ours - torch| = {max_diff:.2e}; "
          f"load average {load_average()}")
    print(format_table(["implementation", "blocks/s", "x torch", "padded tokens/block"], rows))
    result = {
        "benchmark": "corpus_embedding",
        "num_blocks": n,
        "jax_blocks_per_s": ours,
        "torch_blocks_per_s": theirs,
        "ratio": ours / theirs,
        "max_abs_diff": f"{max_diff:.1e}",
    }
    print(json_line(result))
    return result


def _warm_up(embed: CorpusEmbedder, tower: dict, blocks, batch_size: int, max_len: int) -> None:
    """Compiles our function for every padded length of the pass: one real batch each."""
    seen = set()
    for idx, seq_len in length_batches(np.asarray(blocks.lengths), batch_size, max_len):
        if seq_len not in seen:
            seen.add(seq_len)
            inputs = blocks.block_inputs(idx, seq_len)
            part = ArrayBlocks(inputs["input_ids"], inputs["input_mask"], inputs["token_type_ids"])
            embed(tower, part, batch_size=batch_size, max_len=seq_len, progress=False)


def _save_embeddings(save_dir: str, embed, tower, block_emb: np.ndarray) -> None:
    """blocks.npy (ours) and queries.npy (the mini train questions, same tower) for mips.py."""
    texts = [q["question"] for split in ("nq", "squad")
             for q in read_questions(f"mini_{split}", "train")]
    os.makedirs(save_dir, exist_ok=True)
    np.save(os.path.join(save_dir, "blocks.npy"), block_emb)
    np.save(os.path.join(save_dir, "queries.npy"), embed_questions(embed, tower, texts, 64))
    print(f"wrote {save_dir}/blocks.npy {block_emb.shape}, queries.npy ({len(texts)} questions)")
