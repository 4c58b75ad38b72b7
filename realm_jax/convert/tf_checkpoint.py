"""The original TF REALM / ORQA checkpoints -> our Flax parameter trees, and ``block_emb``.

Released artifacts and the variable names they hold (``tf.train.list_variables``; the same names
the PyTorch port's ``load_tf_weights_in_realm`` maps):

- ``cc_news_pretrained/embedder`` (TF-Hub module, ``variables/variables``): the pretrained
  retriever. BERT under ``module/module/module/bert/``, projection ``module/module/dense``
  (768 -> 128), ``module/module/LayerNorm``. Kind ``embedder``.
- ``cc_news_pretrained/bert``: the knowledge-augmented encoder. ``bert/...`` and the MLM head
  ``cls/predictions/{transform/dense, transform/LayerNorm, output_bias}`` (decoder tied to the
  word embeddings). Kind ``encoder``.
- ``orqa_{nq,wq}_model_from_realm`` (``export/best_default/checkpoint``): the fine-tuned model.
  Query tower one ``module/`` deeper (``module/module/module/module/bert/``,
  ``module/module/module/dense``, ``module/module/module/LayerNorm``); reader
  ``reader/module/bert/``, ``reader/dense`` (768 -> 2 x span hidden), ``reader/dense_1``
  (span hidden -> 1), ``reader/layer_normalization``. Kind ``openqa``; ``reader`` alone too.
- ``<embedder module>/encoded/encoded.ckpt``: one variable ``block_emb`` [num_blocks, 128].

Optimiser slots (``adam_m``, ``adam_v``, ``global_step``) are skipped; heads no computation reads
(the MLM heads beside each embedder and inside the reader, BERT's NSP head) are skipped by name.
Anything else left over, any missing variable and any shape that does not fit our model is an
error: one line that names the checkpoint and the variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

import numpy as np

from realm_jax.convert.hf_bert import bert_key_map, params_from_state_dict
from realm_jax.convert.hf_realm import KeyMap, expected_shapes
from realm_jax.errors import ConversionError
from realm_jax.models.realm import RealmConfig
from realm_jax.utils.optional import require

KINDS = ("embedder", "encoder", "reader", "openqa")
OPTIMIZER_PARTS = frozenset(
    {"adam_m", "adam_v", "global_step", "AdamWeightDecayOptimizer", "AdamWeightDecayOptimizer_1"}
)
BLOCK_EMB = "block_emb"
PRETRAINED_EMBEDDER = "module/module/module/bert/"
FINETUNED_EMBEDDER = "module/module/module/module/bert/"
READER_BERT = "reader/module/bert/"
ENCODER_BERT = "bert/"


def _tf_name(hf_name: str, transpose: bool) -> str:
    """A BERT tensor's PyTorch name -> its TF name (``layer.3`` -> ``layer_3``, LN gamma/beta)."""
    parts = re.sub(r"\.(\d+)(?=\.)", r"_\1", hf_name).split(".")
    *scope, leaf = parts
    if scope[-1] == "LayerNorm":
        leaf = {"weight": "gamma", "bias": "beta"}[leaf]
    elif leaf == "weight":
        if not transpose:  # an embedding table: the variable is the scope itself
            return "/".join(scope)
        leaf = "kernel"
    return "/".join([*scope, leaf])


def tf_bert_key_map(cfg: RealmConfig, prefix: str) -> KeyMap:
    """Our BERT param path -> (TF variable name, False): TF kernels are [in, out] like Flax's."""
    return {
        path: (prefix + _tf_name(name, t), False)
        for path, (name, t) in bert_key_map(cfg.bert).items()
    }


def _dense(ours: tuple[str, ...], scope: str) -> KeyMap:
    return {
        ours + ("kernel",): (f"{scope}/kernel", False),
        ours + ("bias",): (f"{scope}/bias", False),
    }


def _norm(ours: tuple[str, ...], scope: str) -> KeyMap:
    return {
        ours + ("scale",): (f"{scope}/gamma", False),
        ours + ("bias",): (f"{scope}/beta", False),
    }


def _under(path: tuple[str, ...], key_map: KeyMap) -> KeyMap:
    return {path + k: v for k, v in key_map.items()}


def embedder_key_map(cfg: RealmConfig, bert_prefix: str) -> KeyMap:
    """Embedder params <- an embedder whose BERT sits at ``bert_prefix`` (pretrained or tuned).

    The projection sits one scope above the BERT: ``module/module/dense`` beside
    ``module/module/module/bert`` (pretrained), one ``module/`` deeper after fine-tuning.
    """
    head = bert_prefix[: -len("module/bert/")]
    return {
        **_under(("bert",), tf_bert_key_map(cfg, bert_prefix)),
        **_dense(("dense",), f"{head}dense"),
        **_norm(("LayerNorm",), f"{head}LayerNorm"),
    }


def encoder_key_map(cfg: RealmConfig) -> KeyMap:
    return {
        **_under(("bert",), tf_bert_key_map(cfg, ENCODER_BERT)),
        **_dense(("mlm_head", "transform_dense"), "cls/predictions/transform/dense"),
        **_norm(("mlm_head", "transform_LayerNorm"), "cls/predictions/transform/LayerNorm"),
        ("mlm_head", "bias"): ("cls/predictions/output_bias", False),
    }


def reader_key_map(cfg: RealmConfig) -> KeyMap:
    return {
        **_under(("bert",), tf_bert_key_map(cfg, READER_BERT)),
        **_dense(("span_intermediate",), "reader/dense"),
        **_dense(("span_output",), "reader/dense_1"),
        **_norm(("span_LayerNorm",), "reader/layer_normalization"),
    }


def _unused(kind: str, embedder_prefix: str) -> tuple[str, ...]:
    """Variable-name prefixes of heads that no computation of ``kind`` reads."""
    embedder_mlm = (embedder_prefix[: -len("bert/")] + "cls/",)  # MLM head beside the embedder
    return {
        "embedder": embedder_mlm,
        "encoder": ("cls/seq_relationship/",),
        "reader": ("reader/module/cls/",),
        "openqa": (*embedder_mlm, "reader/module/cls/", BLOCK_EMB),
    }[kind]


class TFVariables(Mapping):
    """The variables of a TF checkpoint, read one at a time on access (optimiser slots hidden)."""

    def __init__(self, path: str):
        self.prefix = resolve_checkpoint(path)
        tf = _import_tf()
        try:
            self._reader = tf.train.load_checkpoint(self.prefix)
            shapes = self._reader.get_variable_to_shape_map()
        except (tf.errors.OpError, ValueError) as e:
            raise ConversionError(
                f"{self.prefix}: unreadable TF checkpoint ({_first_line(e)})"
            ) from None
        self.shapes = {
            n: tuple(s)
            for n, s in sorted(shapes.items())
            if not OPTIMIZER_PARTS & set(n.split("/"))
        }

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.shapes:
            raise KeyError(name)
        tf = _import_tf()
        try:
            return np.asarray(self._reader.get_tensor(name))
        except (tf.errors.OpError, IndexError, ValueError) as e:
            raise ConversionError(
                f"{self.prefix}: truncated or corrupt checkpoint (reading {name}: {_first_line(e)})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.shapes  # without reading the tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def _import_tf():
    return require("tensorflow", "tf", "reading TF checkpoints")


def _first_line(e: BaseException) -> str:
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    return message.strip().splitlines()[0]


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix, its ``.index`` file, a model dir or a TF-Hub module."""
    path = os.fspath(path)
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        for candidate in ("variables/variables", "encoded/encoded.ckpt"):  # TF-Hub module layouts
            if os.path.isfile(os.path.join(path, candidate + ".index")):
                return os.path.join(path, candidate)
        latest = _latest_checkpoint(path)
        if latest:
            return latest
        raise ConversionError(
            f"{path}: no TF checkpoint (no 'checkpoint' file, *.index or variables/variables.index)"
        )
    raise ConversionError(f"{path}: no such TF checkpoint (expected {path}.index)")


def _latest_checkpoint(directory: str) -> str | None:
    latest = _import_tf().train.latest_checkpoint(directory)
    if latest:
        return latest
    indexes = sorted(f for f in os.listdir(directory) if f.endswith(".index"))
    return os.path.join(directory, indexes[0][: -len(".index")]) if len(indexes) == 1 else None


def _short(names: list[str], limit: int = 6) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _convert(
    variables: TFVariables, key_map: KeyMap, shapes: dict, unused: tuple[str, ...]
) -> dict:
    """Params by ``key_map``; missing, unmapped and wrongly shaped variables in one error line."""
    missing = sorted(name for name, _ in key_map.values() if name not in variables)
    wanted = {name for name, _ in key_map.values()}
    unmapped = sorted(n for n in variables if n not in wanted and not n.startswith(unused))
    if missing or unmapped:
        parts = [f"missing variables: {_short(missing)}"] if missing else []
        parts += [f"unmapped variables: {_short(unmapped)}"] if unmapped else []
        raise ConversionError(f"{variables.prefix}: {'; '.join(parts)}")
    bad = [
        f"{name} {variables.shapes[name]} != expected {shapes[path]}"
        for path, (name, _) in key_map.items()
        if variables.shapes[name] != tuple(shapes[path])
    ]
    if bad:
        raise ConversionError(f"{variables.prefix}: wrong shapes: {_short(bad, 3)}")
    params, _ = params_from_state_dict(variables, key_map, shapes)
    return params


def embedder_prefix(variables: Mapping) -> str:
    """Where the embedder's BERT sits: fine-tuned (one ``module/`` deeper) or pretrained."""
    for prefix in (FINETUNED_EMBEDDER, PRETRAINED_EMBEDDER):
        if f"{prefix}embeddings/word_embeddings" in variables:
            return prefix
    return PRETRAINED_EMBEDDER  # reported as missing variables under this prefix


def key_map(cfg: RealmConfig, kind: str, variables: Mapping) -> tuple[KeyMap, tuple[str, ...]]:
    """(our path -> TF name, skipped prefixes) for a checkpoint of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    prefix = embedder_prefix(variables)
    if kind == "embedder":
        m = embedder_key_map(cfg, prefix)
    elif kind == "encoder":
        m = encoder_key_map(cfg)
    elif kind == "reader":
        m = reader_key_map(cfg)
    else:  # the fine-tuned model's one tower is the query tower (share_embedders: the only one)
        tower = "embedder" if cfg.share_embedders else "query_embedder"
        m = {
            **_under(("retriever", tower), embedder_key_map(cfg, prefix)),
            **_under(("reader",), reader_key_map(cfg)),
        }
    return m, _unused(kind, prefix)


def params_from_tf(variables: TFVariables, cfg: RealmConfig, kind: str) -> dict:
    """A TF checkpoint of ``kind`` (see KINDS) -> ``{"params": ...}`` of our module."""
    m, unused = key_map(cfg, kind, variables)
    shapes = expected_shapes(cfg, kind)
    if kind == "openqa" and not cfg.share_embedders:
        raise ConversionError(
            f"{variables.prefix}: the fine-tuned model has one retriever tower; "
            "convert it with model.share_embedders=True"
        )
    return {"params": _convert(variables, m, shapes, unused)}


def load_tf_checkpoint(path: str, cfg: RealmConfig, kind: str) -> dict:
    """Reads the TF checkpoint at ``path`` (prefix, dir or TF-Hub module) as ``kind``."""
    return params_from_tf(TFVariables(path), cfg, kind)


def load_block_emb(path: str, dim: int | None = None) -> np.ndarray:
    """The ``block_emb`` variable [num_blocks, D] float32 of ``<module>/encoded/encoded.ckpt``."""
    encoded = os.path.join(os.fspath(path), "encoded", "encoded.ckpt")
    variables = TFVariables(encoded if os.path.isfile(encoded + ".index") else path)
    if BLOCK_EMB not in variables:
        raise ConversionError(f"{variables.prefix}: missing variables: {BLOCK_EMB}")
    shape = variables.shapes[BLOCK_EMB]
    if len(shape) != 2 or (dim is not None and shape[1] != dim):
        want = f"[num_blocks, {dim}]" if dim else "[num_blocks, D]"
        raise ConversionError(f"{variables.prefix}: wrong shapes: {BLOCK_EMB} {shape} != {want}")
    return np.asarray(variables[BLOCK_EMB], np.float32)
