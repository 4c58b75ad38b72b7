"""The original TF checkpoints: our converter vs transformers' own ``load_tf_weights_in_realm``.

Each released artifact is written with TensorFlow under its original variable names
(tf_artifacts.py), then loaded twice: into our Flax modules by realm_jax.convert.tf_checkpoint and
into transformers 4.57.6's PyTorch REALM classes by their loader. Before loading, every PyTorch
parameter is set to NaN, so a variable the port's loader silently skips shows up as NaN instead
of a stale initial value. Tolerance as in test_hf_realm.py: float32 through 2 small layers,
agreement to 1e-5 of each output's scale.
"""

import os

import numpy as np
import pytest
import torch
from transformers.models.deprecated.realm import configuration_realm, modeling_realm

from realm_jax.convert.hf_realm import realm_config_from_hf
from realm_jax.convert.tf_checkpoint import TFVariables, load_block_emb, load_tf_checkpoint
from realm_jax.errors import ConversionError
from realm_jax.models.reader import KnowledgeAugEncoder, SpanReader
from realm_jax.models.retriever import Embedder
from tests.convert.test_hf_realm import (
    PARITY,
    VOCAB,
    _inputs,
    _reader_inputs,
    _t,
    assert_parity,
    check_openqa,
)
from tests.convert.tf_artifacts import (
    artifact_shapes,
    random_values,
    save_tf_checkpoint,
    write_artifact,
    write_block_emb,
)

DIMS = dict(vocab=VOCAB, hidden=32, layers=2, inter=64, positions=512, proj=16, span=12)
HF_CLASSES = {
    "embedder": modeling_realm.RealmEmbedder,
    "encoder": modeling_realm.RealmKnowledgeAugEncoder,
    "reader": modeling_realm.RealmReader,
    "openqa": modeling_realm.RealmForOpenQA,
}
# Heads no REALM computation reads; the port's loader fills them, ours skips them by name.
UNUSED = ("cls.predictions.", "reader.cls.")


@pytest.fixture(scope="module", autouse=True)
def _print_parity():
    yield
    for name, (d_abs, d_rel) in sorted(PARITY.items()):
        if name.startswith("tf."):
            print(f"parity {name:28s} max|diff| {d_abs:.2e}  max|diff|/max|ref| {d_rel:.2e}")


@pytest.fixture(scope="module")
def hf_cfg():
    return configuration_realm.RealmConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, retriever_proj_size=16, span_hidden_size=12, max_span_width=4,
        reader_beam_size=3, searcher_beam_size=5, num_block_records=7,
    )


@pytest.fixture(scope="module")
def cfg(hf_cfg):
    return realm_config_from_hf(hf_cfg.to_dict())


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    return {
        kind: write_artifact(str(root / kind), kind, DIMS, seed)[0]
        for seed, kind in enumerate(("embedder", "encoder", "openqa", "reader"))
    }


def _port(hf_cfg, kind, prefix):
    """The PyTorch class of ``kind`` loaded by the port's own TF loader, every param checked."""
    model = HF_CLASSES[kind](hf_cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model = modeling_realm.load_tf_weights_in_realm(model, hf_cfg, prefix).eval()
    skipped = [n for n, p in model.named_parameters() if torch.isnan(p).any()]
    assert all(n.startswith(UNUSED) or ".cls.predictions." in n for n in skipped), skipped
    return model


def test_pretrained_embedder(hf_cfg, cfg, artifacts):
    hf = _port(hf_cfg, "embedder", artifacts["embedder"])
    params = load_tf_checkpoint(
        os.path.dirname(os.path.dirname(artifacts["embedder"])), cfg, "embedder"
    )
    ids, mask, types = _inputs(1, 4)
    with torch.no_grad():
        ref = hf(_t(ids), _t(mask), _t(types)).projected_score.numpy()
    ours = Embedder(cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps).apply(
        params, ids, mask, types
    )
    assert_parity("tf.embedder", ours, ref)


def test_pretrained_encoder(hf_cfg, cfg, artifacts):
    hf = _port(hf_cfg, "encoder", artifacts["encoder"])
    params = load_tf_checkpoint(artifacts["encoder"], cfg, "encoder")
    ids, mask, types = _inputs(2, 2, 3)
    with torch.no_grad():
        relevance = torch.zeros(2, 3)
        ref = hf(_t(ids), _t(mask), _t(types), relevance_score=relevance).logits.numpy()
    every = np.broadcast_to(np.arange(ids.shape[-1]), ids.shape)
    ours = KnowledgeAugEncoder(cfg.bert).apply(params, ids, mask, types, every)
    assert_parity("tf.encoder.mlm_logits", np.asarray(ours).reshape(ref.shape), ref)


def test_finetuned_reader(hf_cfg, cfg, artifacts):
    hf = _port(hf_cfg, "reader", artifacts["reader"])
    params = load_tf_checkpoint(artifacts["reader"], cfg, "reader")
    ids, mask, types, block_mask = _reader_inputs(3, 3)
    relevance = np.zeros(3, np.float32)
    with torch.no_grad():
        seq = hf.realm(_t(ids), _t(mask), _t(types)).last_hidden_state
        ref = hf.qa_outputs(seq, _t(block_mask))[0].numpy()
    reader = SpanReader(cfg.bert, cfg.span_hidden_size, cfg.max_span_width, cfg.span_layer_norm_eps)
    logits, span_mask, _, _ = reader.apply(params, ids, mask, types, block_mask, relevance)
    assert_parity("tf.reader.logits", logits[span_mask], ref[span_mask])


def test_finetuned_openqa_model(hf_cfg, cfg, artifacts):
    """orqa_nq_model_from_realm's layout -> OpenQAModel: query tower and reader both match."""
    hf = _port(hf_cfg, "openqa", artifacts["openqa"])
    params = load_tf_checkpoint(os.path.dirname(artifacts["openqa"]), cfg, "openqa")
    check_openqa(hf, params, cfg, "tf.openqa", seed=4)


def test_block_emb(tmp_path):
    emb = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    write_block_emb(str(tmp_path / "embedder"), emb)
    np.testing.assert_array_equal(load_block_emb(str(tmp_path / "embedder"), 16), emb)
    with pytest.raises(ConversionError, match=r"encoded\.ckpt: wrong shapes: block_emb \(50, 16\)"):
        load_block_emb(str(tmp_path / "embedder"), 128)


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_errors_name_the_variable_or_file(cfg, tmp_path):
    values = random_values(artifact_shapes("encoder", DIMS), 0)
    wrong = dict(values)
    wrong["bert/encoder/layer_1/output/dense/kernel"] = np.zeros((64, 30), np.float32)
    bad = save_tf_checkpoint(str(tmp_path / "shape" / "model.ckpt"), wrong)
    with pytest.raises(ConversionError) as e:
        load_tf_checkpoint(bad, cfg, "encoder")
    assert (
        "wrong shapes: bert/encoder/layer_1/output/dense/kernel (64, 30) != expected (64, 32)"
        in _one_line(e)
    )

    missing = {k: v for k, v in values.items() if k != "cls/predictions/output_bias"}
    bad = save_tf_checkpoint(str(tmp_path / "missing" / "model.ckpt"), missing)
    with pytest.raises(ConversionError) as e:
        load_tf_checkpoint(bad, cfg, "encoder")
    assert _one_line(e) == f"{bad}: missing variables: cls/predictions/output_bias"

    extra = {**values, "bert/encoder/layer_2/output/dense/bias": np.zeros(32, np.float32)}
    bad = save_tf_checkpoint(str(tmp_path / "extra" / "model.ckpt"), extra)
    with pytest.raises(ConversionError) as e:
        load_tf_checkpoint(bad, cfg, "encoder")
    assert _one_line(e) == f"{bad}: unmapped variables: bert/encoder/layer_2/output/dense/bias"

    prefix = save_tf_checkpoint(str(tmp_path / "cut" / "model.ckpt"), values)
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(ConversionError) as e:
        load_tf_checkpoint(prefix, cfg, "encoder")
    assert _one_line(e).startswith(f"{prefix}: truncated or corrupt checkpoint (reading ")

    with open(prefix + ".index", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ConversionError) as e:
        TFVariables(prefix)
    assert _one_line(e).startswith(f"{prefix}: unreadable TF checkpoint")
    with pytest.raises(ConversionError) as e:
        TFVariables(str(tmp_path / "nowhere"))
    assert (
        _one_line(e)
        == f"{tmp_path / 'nowhere'}: no such TF checkpoint (expected {tmp_path / 'nowhere'}.index)"
    )
