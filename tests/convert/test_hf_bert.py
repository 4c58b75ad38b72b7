"""Parity with transformers' PyTorch BertModel (an independent implementation)."""

import os

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from transformers import BertConfig as HFBertConfig
from transformers import BertModel as TorchBertModel

from realm_jax.assets import minilm_dir
from realm_jax.convert import load_hf_bert, load_state_dict
from realm_jax.errors import ConversionError
from realm_jax.models.bert import BertModel

torch.set_num_threads(1)


def _torch_forward(model, batch):
    t = lambda k: torch.tensor(batch[k], dtype=torch.long)
    with torch.no_grad():
        out = model(
            input_ids=t("input_ids"),
            attention_mask=t("input_mask"),
            token_type_ids=t("token_type_ids"),
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _jax_forward(cfg, params, batch):
    fwd = jax.jit(lambda p, i, m, t: BertModel(cfg).apply(p, i, m, t))
    seq, pooled = fwd(params, batch["input_ids"], batch["input_mask"], batch["token_type_ids"])
    return np.asarray(seq), np.asarray(pooled)


@pytest.fixture(scope="module")
def minilm():
    return load_hf_bert(minilm_dir())


def test_minilm_parity_on_real_sentences(minilm, tokenizer, passages32):
    """all-MiniLM-L6-v2 on 32 real passages: sequence and pooled outputs within 1e-4 of PyTorch."""
    cfg, params = minilm
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (6, 384)
    batch = tokenizer.encode([p["text"] for p in passages32], 128)
    assert (
        batch["input_mask"].sum(1).min() < 128 <= batch["input_mask"].sum(1).max()
    )  # padded + full
    ref_seq, ref_pooled = _torch_forward(TorchBertModel.from_pretrained(minilm_dir()).eval(), batch)
    seq, pooled = _jax_forward(cfg, params, batch)
    assert np.abs(seq - ref_seq).max() <= 1e-4
    assert np.abs(pooled - ref_pooled).max() <= 1e-4


@pytest.fixture(scope="module")
def random_torch_bert():
    """A small random BERT with the tanh GELU, to cover the paths MiniLM does not."""
    torch.manual_seed(0)
    hf_cfg = HFBertConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        hidden_act="gelu_new",
    )
    return TorchBertModel(hf_cfg).eval()


def _write_checkpoint(model, path, fmt):
    os.makedirs(path, exist_ok=True)
    model.config.to_json_file(os.path.join(path, "config.json"))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        save_file({k: v.numpy() for k, v in sd.items()}, os.path.join(path, "model.safetensors"))
    else:
        torch.save(sd, os.path.join(path, "pytorch_model.bin"))
    return path


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_random_weights_parity_both_formats(random_torch_bert, tokenizer, tmp_path, fmt):
    path = _write_checkpoint(random_torch_bert, str(tmp_path / fmt), fmt)
    cfg, params = load_hf_bert(path)
    assert cfg.hidden_act == "gelu_new"
    batch = tokenizer.encode_pairs(
        ["who won super bowl 50?"] * 2, ["the denver broncos", "carolina panthers lost 24-10"], 20
    )
    assert batch["token_type_ids"].max() == 1
    ref_seq, ref_pooled = _torch_forward(random_torch_bert, batch)
    seq, pooled = _jax_forward(cfg, params, batch)
    # float32, 2 layers, values O(1): agreement to ~1e-5 relative.
    np.testing.assert_allclose(seq, ref_seq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, ref_pooled, rtol=1e-5, atol=1e-5)


def test_torch_zip_reader_matches_torch(random_torch_bert, tmp_path):
    path = _write_checkpoint(random_torch_bert, str(tmp_path / "bin"), "bin")
    ours = load_state_dict(path)
    ref = random_torch_bert.state_dict()
    assert set(ours) == set(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(ours[k], v.numpy())


def _mutated_checkpoint(random_torch_bert, tmp_path, mutate):
    path = _write_checkpoint(random_torch_bert, str(tmp_path / "ckpt"), "safetensors")
    sd = load_state_dict(path)
    mutate(sd)
    save_file(sd, os.path.join(path, "model.safetensors"))
    return path


def test_missing_tensor_is_named(random_torch_bert, tmp_path):
    path = _mutated_checkpoint(
        random_torch_bert, tmp_path, lambda sd: sd.pop("encoder.layer.1.attention.self.key.weight")
    )
    with pytest.raises(
        ConversionError, match=r"missing tensors: encoder\.layer\.1\.attention\.self\.key\.weight"
    ):
        load_hf_bert(path)


def test_unexpected_tensor_is_named(random_torch_bert, tmp_path):
    def add(sd):
        sd["encoder.layer.2.output.dense.weight"] = np.zeros((48, 96), np.float32)

    with pytest.raises(
        ConversionError, match=r"unexpected tensors: encoder\.layer\.2\.output\.dense\.weight"
    ):
        load_hf_bert(_mutated_checkpoint(random_torch_bert, tmp_path, add))


def test_wrong_shape_is_named(random_torch_bert, tmp_path):
    def shrink(sd):
        sd["pooler.dense.bias"] = np.zeros((47,), np.float32)

    with pytest.raises(ConversionError, match=r"wrong shapes: pooler\.dense\.bias: \(47,\)"):
        load_hf_bert(_mutated_checkpoint(random_torch_bert, tmp_path, shrink))


def test_unreadable_files(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="unreadable safetensors"):
        load_state_dict(str(bad))
    junk = tmp_path / "pytorch_model.bin"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a PyTorch zip checkpoint"):
        load_state_dict(str(junk))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_state_dict(str(tmp_path / "nope.safetensors"))
