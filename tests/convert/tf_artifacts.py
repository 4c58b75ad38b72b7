"""Synthetic REALM / ORQA release artifacts in the original TF formats, written with TensorFlow.

Variable names are spelled out here from the released checkpoints' layout (TF BERT's scopes and
the prefixes docs/DESIGN.md section 3 lists), not derived from realm_jax's key maps, so a naming
slip in the converter cannot hide behind the same slip in the test. Values are random: LayerNorm
gammas near 1, everything else N(0, 0.2^2), float32. Each artifact also carries what the release
carries beside the weights: optimiser slots, ``global_step`` and the unused MLM / NSP heads.
"""

from __future__ import annotations

import os

import numpy as np


def bert_shapes(prefix: str, vocab: int, hidden: int, layers: int, inter: int, positions: int):
    """TF BERT's variables (``modeling.py`` scopes) under ``prefix``: name -> shape."""
    s = {
        "embeddings/word_embeddings": (vocab, hidden),
        "embeddings/position_embeddings": (positions, hidden),
        "embeddings/token_type_embeddings": (2, hidden),
        "embeddings/LayerNorm/gamma": (hidden,),
        "embeddings/LayerNorm/beta": (hidden,),
        "pooler/dense/kernel": (hidden, hidden),
        "pooler/dense/bias": (hidden,),
    }
    for i in range(layers):
        layer = f"encoder/layer_{i}"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            s[f"{layer}/{part}/kernel"], s[f"{layer}/{part}/bias"] = (hidden, hidden), (hidden,)
        s[f"{layer}/intermediate/dense/kernel"] = (hidden, inter)
        s[f"{layer}/intermediate/dense/bias"] = (inter,)
        s[f"{layer}/output/dense/kernel"], s[f"{layer}/output/dense/bias"] = (
            (inter, hidden),
            (hidden,),
        )
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            s[f"{layer}/{norm}/gamma"] = s[f"{layer}/{norm}/beta"] = (hidden,)
    return {prefix + k: v for k, v in s.items()}


def mlm_head_shapes(prefix: str, vocab: int, hidden: int):
    return {
        f"{prefix}predictions/transform/dense/kernel": (hidden, hidden),
        f"{prefix}predictions/transform/dense/bias": (hidden,),
        f"{prefix}predictions/transform/LayerNorm/gamma": (hidden,),
        f"{prefix}predictions/transform/LayerNorm/beta": (hidden,),
        f"{prefix}predictions/output_bias": (vocab,),
    }


def artifact_shapes(kind: str, dims: dict) -> dict[str, tuple[int, ...]]:
    """Every variable of a released checkpoint of ``kind``, at the sizes in ``dims``."""
    v, h, p, s = dims["vocab"], dims["hidden"], dims["proj"], dims["span"]
    bert = lambda prefix: bert_shapes(
        prefix, v, h, dims["layers"], dims["inter"], dims["positions"]
    )  # noqa: E731
    if kind == "embedder":  # cc_news_pretrained/embedder
        shapes = {
            **bert("module/module/module/bert/"),
            **mlm_head_shapes("module/module/module/cls/", v, h),
            "module/module/dense/kernel": (h, p),
            "module/module/dense/bias": (p,),
            "module/module/LayerNorm/gamma": (p,),
            "module/module/LayerNorm/beta": (p,),
        }
    elif kind == "encoder":  # cc_news_pretrained/bert
        # No NSP head (cls/seq_relationship): REALM drops it, and the port's loader fails on one.
        shapes = {**bert("bert/"), **mlm_head_shapes("cls/", v, h)}
    elif kind in ("openqa", "reader"):  # orqa_*_model_from_realm
        shapes = {
            **bert("reader/module/bert/"),
            **mlm_head_shapes("reader/module/cls/", v, h),
            "reader/dense/kernel": (h, 2 * s),
            "reader/dense/bias": (2 * s,),
            "reader/dense_1/kernel": (s, 1),
            "reader/dense_1/bias": (1,),
            "reader/layer_normalization/gamma": (s,),
            "reader/layer_normalization/beta": (s,),
        }
        if kind == "openqa":
            shapes.update(bert("module/module/module/module/bert/"))
            shapes.update(mlm_head_shapes("module/module/module/module/cls/", v, h))
            shapes["module/module/module/dense/kernel"] = (h, p)
            shapes["module/module/module/dense/bias"] = (p,)
            shapes["module/module/module/LayerNorm/gamma"] = (p,)
            shapes["module/module/module/LayerNorm/beta"] = (p,)
    else:
        raise ValueError(kind)
    return shapes


def random_values(shapes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        x = rng.normal(0.0, 0.2, shape).astype(np.float32)
        out[name] = x + 1.0 if name.endswith("gamma") else x
    return out


def save_tf_checkpoint(prefix: str, variables: dict[str, np.ndarray], slots: bool = True) -> str:
    """Writes a TF V2 checkpoint (``prefix.index`` + ``prefix.data-*``) holding ``variables``.

    ``slots``: also AdamWeightDecayOptimizer's ``adam_m`` / ``adam_v`` of a few variables and
    ``global_step``, as the released training checkpoints have.
    """
    import tensorflow as tf

    variables = dict(variables)
    if slots:
        for name in list(variables)[:3]:
            variables[f"{name}/adam_m"] = np.zeros_like(variables[name])
            variables[f"{name}/adam_v"] = np.zeros_like(variables[name])
        variables["global_step"] = np.int64(300_000)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[variables[n] for n in names],
    )
    with open(os.path.join(os.path.dirname(prefix), "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{os.path.basename(prefix)}"\n')
    return prefix


def write_artifact(directory: str, kind: str, dims: dict, seed: int) -> tuple[str, dict]:
    """A checkpoint of ``kind`` under ``directory``; returns (its prefix, its variables)."""
    values = random_values(artifact_shapes(kind, dims), seed)
    prefix = {
        "embedder": "variables/variables",  # a TF-Hub module's layout
        "encoder": "variables/variables",
    }.get(kind, "model.ckpt-300000")
    return save_tf_checkpoint(os.path.join(directory, prefix), values), values


def write_block_emb(module_dir: str, block_emb: np.ndarray) -> str:
    """``<module>/encoded/encoded.ckpt`` with its one variable ``block_emb``."""
    prefix = os.path.join(module_dir, "encoded", "encoded.ckpt")
    return save_tf_checkpoint(prefix, {"block_emb": np.asarray(block_emb, np.float32)}, False)


def write_tfrecord_strings(path: str, records: list[str]) -> str:
    """A TFRecord file of raw UTF-8 string records (``blocks.tfr`` / ``titles.tfr``)."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.encode("utf-8"))
    return path
