"""Encoder throughput: our Flax BERT vs transformers' PyTorch BertModel (and FlaxBertModel)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.assets import MINI_PASSAGES, minilm_dir
from realm_jax.benchmarks.common import (
    format_table,
    json_line,
    load_average,
    machine_info,
    time_interleaved,
)
from realm_jax.convert import load_hf_bert
from realm_jax.data.tokenization import Tokenizer
from realm_jax.models.bert import (
    CPU_ATTENTION_CHUNK_BYTES,
    BertModel,
    attention_batch_chunk,
    dot_product_attention,
)


def real_batch(batch_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """The first ``batch_size`` mini-corpus passages, tokenized and padded to ``seq_len``."""
    with open(MINI_PASSAGES, encoding="utf-8") as f:
        texts = [json.loads(next(f))["text"] for _ in range(batch_size)]
    return Tokenizer().encode(texts, seq_len)


def jax_encoder_fn(cfg, params, batch, **model_kwargs):
    """A zero-argument callable running our jitted encoder on ``batch`` to completion."""
    model = BertModel(cfg, **model_kwargs)
    fwd = jax.jit(lambda p, i, m, t: model.apply(p, i, m, t))
    args = [jnp.asarray(batch[k]) for k in ("input_ids", "input_mask", "token_type_ids")]
    params = jax.device_put(params)  # once, as torch holds its weights (was copied every call)
    return lambda: jax.block_until_ready(fwd(params, *args))


def hf_flax_encoder_fn(model_dir: str, params, batch):
    """The same for transformers' FlaxBertModel (weights copied from ours, same layout)."""
    from transformers import BertConfig as HFConfig
    from transformers import FlaxBertModel

    model = FlaxBertModel(HFConfig.from_pretrained(model_dir), _do_init=False)
    hf_params = _to_hf_flax_params(params["params"])
    ids, mask, tt = (jnp.asarray(batch[k]) for k in ("input_ids", "input_mask", "token_type_ids"))
    pos = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    fwd = jax.jit(
        lambda p: model.module.apply({"params": p}, ids, mask, tt, pos, None, deterministic=True)
    )
    return lambda: jax.block_until_ready(fwd(hf_params))


def _to_hf_flax_params(p: dict) -> dict:
    layers = {}
    for i in range(sum(k.startswith("layer_") for k in p)):
        q = p[f"layer_{i}"]
        layers[str(i)] = {
            "attention": {
                "self": dict(q["attention"]),
                "output": {"dense": q["attention_output"], "LayerNorm": q["attention_LayerNorm"]},
            },
            "intermediate": {"dense": q["intermediate"]},
            "output": {"dense": q["output"], "LayerNorm": q["output_LayerNorm"]},
        }
    return {
        "embeddings": p["embeddings"],
        "encoder": {"layer": layers},
        "pooler": {"dense": p["pooler"]},
    }


def torch_encoder_fn(model_dir: str, batch, threads: int):
    """The same for transformers' PyTorch BertModel under ``torch.inference_mode``."""
    import torch
    from transformers import BertModel as TorchBertModel

    torch.set_num_threads(threads)
    model = TorchBertModel.from_pretrained(model_dir).eval()
    inputs = {
        "input_ids": torch.tensor(batch["input_ids"], dtype=torch.long),
        "attention_mask": torch.tensor(batch["input_mask"], dtype=torch.long),
        "token_type_ids": torch.tensor(batch["token_type_ids"], dtype=torch.long),
    }

    def run():
        with torch.inference_mode():
            model(**inputs)

    return run, model.config._attn_implementation


def encoder_throughput_main(
    batch_size: int, seq_lens: Sequence[int], iters: int, torch_threads: int, hf_flax: bool
) -> dict:
    """Times each implementation at each length, prints a table and the JSON line; returns it."""
    model_dir = minilm_dir()
    cfg, params = load_hf_bert(model_dir)
    info = machine_info()
    print(f"machine: {info}")
    rows, result = [], {}
    for seq_len in seq_lens:
        batch = real_batch(batch_size, seq_len)
        real = float(batch["input_mask"].sum(1).mean())
        torch_fn, attn = torch_encoder_fn(model_dir, batch, torch_threads)
        runs = {
            "jax (realm_jax BertModel)": jax_encoder_fn(cfg, params, batch),
            "jax (realm_jax, attention chunks off)": jax_encoder_fn(
                cfg, params, batch, attention_chunk_bytes=None
            ),
            f"torch BertModel ({attn}, {torch_threads} threads)": torch_fn,
        }
        if hf_flax:
            runs["jax (transformers FlaxBertModel)"] = hf_flax_encoder_fn(model_dir, params, batch)
        speeds = {name: batch_size / t for name, t in time_interleaved(runs, iters).items()}
        torch_speed = next(v for k, v in speeds.items() if k.startswith("torch"))
        for name, speed in speeds.items():
            rows.append([seq_len, f"{real:.0f}", name, speed, speed / torch_speed])
        if not result:
            jax_speed = speeds["jax (realm_jax BertModel)"]
            result = {
                "benchmark": "encoder_throughput",
                "seq_len": seq_len,
                "jax_seqs_per_s": jax_speed,
                "torch_seqs_per_s": torch_speed,
                "ratio": jax_speed / torch_speed,
            }
    headers = ["seq_len", "mean real tokens", "implementation", "seqs/s", "x torch"]
    print(
        f"\nall-MiniLM-L6-v2, batch {batch_size}, float32, median of {iters} interleaved rounds "
        f"after warm-up; load average at the end {load_average()}"
    )
    print(format_table(headers, rows))
    print(json_line(result))
    return result


def attention_layouts(batch: int, heads: int, seq: int, head_dim: int, chunk_bytes: int):
    """Zero-argument callables for the attention core (scores, softmax, probs @ v) per layout."""

    rng = np.random.default_rng(0)
    q, k, v = (
        jnp.asarray(rng.standard_normal((batch, heads, seq, head_dim)), jnp.float32)
        for _ in range(3)
    )
    bias = jnp.zeros((batch, 1, 1, seq), jnp.float32)
    to_bshd = lambda t: t.transpose(0, 2, 1, 3)

    def seq_major(q, k, v, bias):  # the layout of transformers' FlaxBertModel / flax attention
        s = jnp.einsum("bqhd,bkhd->bhqk", to_bshd(q) * head_dim**-0.5, to_bshd(k)) + bias
        return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, -1), to_bshd(v))

    chunk = attention_batch_chunk(batch, heads, seq, 4, chunk_bytes)

    def chunked(q, k, v, bias):
        split = lambda t: t.reshape(batch // chunk, chunk, *t.shape[1:])
        return jax.lax.map(lambda a: dot_product_attention(*a), tuple(map(split, (q, k, v, bias))))

    fns = {
        "[b,s,h,d] einsum": seq_major,
        "[b,h,s,d] batched GEMM": dot_product_attention,
        f"[b,h,s,d] + batch chunks of {chunk}": chunked,
    }
    out = {}
    for name, fn in fns.items():
        compiled = jax.jit(fn).lower(q, k, v, bias).compile()
        out[name] = lambda c=compiled: jax.block_until_ready(c(q, k, v, bias))
    return out


def attention_layout_main(batch_size: int, seq_lens: Sequence[int], iters: int) -> dict:
    """Times the attention core of all-MiniLM-L6-v2 (12 heads x 32) per layout; prints a table."""

    print(f"machine: {machine_info()}")
    rows, result = [], {"benchmark": "attention_layout"}
    for seq_len in seq_lens:
        fns = attention_layouts(batch_size, 12, seq_len, 32, CPU_ATTENTION_CHUNK_BYTES)
        times = time_interleaved(fns, iters)
        base = next(iter(times.values()))
        for name, t in times.items():
            rows.append([seq_len, name, 1000 * t, base / t])
        result[f"speedup_chunked_{seq_len}"] = base / list(times.values())[-1]
    print(f"\nattention core, batch {batch_size}, 12 heads x 32, float32, one layer")
    print(format_table(["seq_len", "layout", "ms", "x [b,s,h,d]"], rows))
    print(json_line(result))
    return result
