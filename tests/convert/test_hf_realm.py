"""Parity with transformers' PyTorch REALM port (an independent implementation), same weights.

Tolerance: float32 through 2 small layers, values O(1-10); both sides accumulate in float32 in
different orders, so agreement to 1e-5 of each tensor's scale (elementwise rtol 1e-5 plus atol
1e-5 * max|ref|) is what float32 allows; a wrong name, transpose or epsilon is off by >1e-3.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers.models.deprecated.realm import configuration_realm, modeling_realm

from realm_jax.convert.hf_realm import load_hf_realm, params_from_hf_realm, realm_config_from_hf
from realm_jax.errors import ConversionError
from realm_jax.losses import correct_spans, mlm_targets_from_labels, openqa_loss, realm_mlm_loss
from realm_jax.models.reader import KnowledgeAugEncoder, SpanReader
from realm_jax.models.realm import OpenQAModel
from realm_jax.models.retriever import Embedder

torch.set_num_threads(1)
B, K, L, VOCAB = 2, 3, 16, 512
PARITY = {}  # name -> (max abs diff, max abs diff / max |ref|), printed at the end


def assert_parity(name, ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
    scale = max(np.abs(ref).max(), 1e-30)
    PARITY[name] = (np.abs(ours - ref).max(), np.abs(ours - ref).max() / scale)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * scale, err_msg=name)


@pytest.fixture(scope="module", autouse=True)
def _print_parity():
    yield
    for name, (d_abs, d_rel) in sorted(PARITY.items()):
        print(f"parity {name:28s} max|diff| {d_abs:.2e}  max|diff|/max|ref| {d_rel:.2e}")


@pytest.fixture(scope="module")
def hf_cfg():
    return configuration_realm.RealmConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        retriever_proj_size=16,
        num_candidates=K,
        span_hidden_size=12,
        max_span_width=4,
        reader_beam_size=3,
        searcher_beam_size=5,
        num_block_records=7,
    )


@pytest.fixture(scope="module")
def cfg(hf_cfg):
    return realm_config_from_hf(hf_cfg.to_dict())


def _randomised(module, seed):
    """Eval-mode module whose every parameter (LayerNorms and biases too) is random."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module.eval()


def _state_dict(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _inputs(seed, *lead):
    """Token ids, attention mask (some rows padded) and segment ids of shape [*lead, L]."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (*lead, L))
    lengths = rng.integers(L // 2, L + 1, lead)
    mask = (np.arange(L) < lengths[..., None]).astype(np.int64)
    types = (np.arange(L) >= L // 3).astype(np.int64) * mask
    return ids * mask, mask, types


def _t(x):
    return torch.tensor(np.asarray(x))


def test_embedder_parity(hf_cfg, cfg):
    hf = _randomised(modeling_realm.RealmEmbedder(hf_cfg), 0)
    params = params_from_hf_realm(_state_dict(hf), cfg, "embedder")
    ids, mask, types = _inputs(1, 4)
    with torch.no_grad():
        ref = hf(_t(ids), _t(mask), _t(types)).projected_score.numpy()
    embedder = Embedder(cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps)
    ours = embedder.apply(params, ids, mask, types)
    assert_parity("embedder", ours, ref)


@pytest.mark.parametrize("share", [True, False])
def test_scorer_parity(hf_cfg, cfg, share):
    query_tower = None if share else modeling_realm.RealmEmbedder(hf_cfg)
    hf = _randomised(modeling_realm.RealmScorer(hf_cfg, query_embedder=query_tower), 2)
    cfg = cfg.replace(share_embedders=share)
    params = params_from_hf_realm(_state_dict(hf), cfg, "scorer")
    q, c = _inputs(3, B), _inputs(4, B, K)
    with torch.no_grad():
        out = hf(
            _t(q[0]), _t(q[1]), _t(q[2]),
            candidate_input_ids=_t(c[0]),
            candidate_attention_mask=_t(c[1]),
            candidate_token_type_ids=_t(c[2]),
        )
    query_emb, cand_emb, logits = cfg.retriever().apply(params, q[0], q[1], c[0], c[1], c[2], q[2])
    tag = "shared" if share else "separate"
    assert_parity(f"scorer_{tag}.query_emb", query_emb, out.query_score.numpy())
    assert_parity(f"scorer_{tag}.cand_emb", cand_emb, out.candidate_score.numpy())
    assert_parity(f"scorer_{tag}.relevance", logits, out.relevance_score.numpy())


def test_knowledge_aug_encoder_logits_and_loss(hf_cfg, cfg):
    hf = _randomised(modeling_realm.RealmKnowledgeAugEncoder(hf_cfg), 5)
    assert hf.cls.predictions.decoder.weight is hf.realm.embeddings.word_embeddings.weight
    params = params_from_hf_realm(_state_dict(hf), cfg, "encoder")
    ids, mask, types = _inputs(6, B, K)
    rng = np.random.default_rng(7)
    relevance = rng.normal(size=(B, K)).astype(np.float32) * 3
    labels = np.full((B, L), -100)
    labels[0, [1, 2, 5]] = rng.integers(0, VOCAB, 3)
    labels[1, [3]] = rng.integers(0, VOCAB, 1)
    with torch.no_grad():
        out = hf(
            _t(ids),
            _t(mask),
            _t(types),
            relevance_score=_t(relevance),
            labels=_t(labels),
            mlm_mask=_t(labels != -100),
        )
        port_default_loss = hf(
            _t(ids), _t(mask), _t(types), relevance_score=_t(relevance), labels=_t(labels)
        ).loss.item()
    every_position = np.broadcast_to(np.arange(L), (B, K, L))
    logits = KnowledgeAugEncoder(cfg.bert).apply(params, ids, mask, types, every_position)
    assert_parity("encoder.mlm_logits", logits.reshape(B * K, L, VOCAB), out.logits.numpy())

    positions, targets, mlm_mask = mlm_targets_from_labels(jnp.asarray(labels), max_masks=4)
    gathered = jnp.take_along_axis(logits, positions[:, None, :, None], axis=2)
    loss, metrics = realm_mlm_loss(relevance, np.ones((B, K)), gathered, targets, mlm_mask)
    assert_parity("encoder.mlm_loss", loss, out.loss.item())
    # Port difference: without mlm_mask the port divides by every position, not by the masks.
    np.testing.assert_allclose(port_default_loss, float(loss) * 4 / (B * L), rtol=1e-5)
    assert float(metrics["num_masks"]) == 4


def _reader_inputs(seed, rows):
    """[CLS] q q q q [SEP] block ... [SEP] pad: block_mask covers the block's tokens only."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (rows, L))
    lengths = np.array([L, L - 3, L - 6][:rows])
    mask = (np.arange(L) < lengths[:, None]).astype(np.int64)
    types = ((np.arange(L) >= 6) * mask).astype(np.int64)
    block_mask = types.copy()
    block_mask[np.arange(rows), lengths - 1] = 0  # the final [SEP]
    return ids * mask, mask, types, block_mask.astype(bool)


@pytest.mark.parametrize("answered", [True, False])
def test_reader_logits_and_losses(hf_cfg, cfg, answered):
    hf = _randomised(modeling_realm.RealmReader(hf_cfg), 8)
    params = params_from_hf_realm(_state_dict(hf), cfg, "reader")
    ids, mask, types, block_mask = _reader_inputs(9, 3)
    relevance = np.random.default_rng(10).normal(size=5).astype(np.float32) * 2
    if answered:  # gold (start, end) per reader block, -1 pads; one span too wide to be a candidate
        starts = np.array([[7, 10], [6, -1], [-1, -1]])
        ends = np.array([[9, 10], [11, -1], [-1, -1]])
        has_answers = np.array([True, False, True, False, False])
    else:
        starts = ends = np.full((3, 2), -1)
        has_answers = np.zeros(5, bool)
    with torch.no_grad():
        kw = dict(relevance_score=_t(relevance), block_mask=_t(block_mask))
        out = hf(_t(ids), _t(mask), _t(types), **kw, start_positions=_t(starts),
                 end_positions=_t(ends), has_answers=_t(has_answers))
        seq = hf.realm(_t(ids), _t(mask), _t(types)).last_hidden_state
        ref_logits, ref_starts, ref_ends = hf.qa_outputs(seq, _t(block_mask))
        ref_logits = (ref_logits + _t(relevance[:3, None])).numpy()
    reader = SpanReader(cfg.bert, cfg.span_hidden_size, cfg.max_span_width, cfg.span_layer_norm_eps)
    logits, span_mask, our_starts, our_ends = reader.apply(
        params, ids, mask, types, block_mask, relevance[:3]
    )
    np.testing.assert_array_equal(our_starts, ref_starts.numpy())
    np.testing.assert_array_equal(our_ends, ref_ends.numpy())
    assert (np.asarray(span_mask) == (ref_logits > -1e30)).all()
    assert_parity("reader.logits(valid spans)", logits[span_mask], ref_logits[span_mask])

    correct = correct_spans(our_starts, our_ends, starts[None], ends[None])
    np.testing.assert_array_equal(correct[0], out.reader_correct.numpy())
    loss, metrics = openqa_loss(
        relevance[None], has_answers[None], np.ones((1, 5), bool), logits[None], span_mask[None],
        correct,
    )
    if answered:
        assert_parity("reader.total_loss", loss, out.loss.item())
        assert_parity("reader.retriever_loss", metrics["retriever_loss_sum"], out.retriever_loss)
        assert_parity("reader.reader_loss", metrics["reader_loss_sum"], out.reader_loss)
    else:  # nothing correct anywhere: both losses are exactly zero, in the port and here
        assert float(loss) == 0.0 and out.loss.item() == 0.0
    flat = np.asarray(logits).reshape(-1)
    assert np.argmax(flat) // logits.shape[1] == out.block_idx.item()
    assert our_starts[np.argmax(flat) % logits.shape[1]] == out.start_pos.item()
    assert our_ends[np.argmax(flat) % logits.shape[1]] == out.end_pos.item()


def check_openqa(hf, params, cfg, tag, seed):
    """OpenQAModel(params) vs the port's RealmForOpenQA: query tower and reader logits."""
    q_ids, q_mask, _ = _inputs(seed, 1)
    ids, mask, types, block_mask = _reader_inputs(seed + 1, 3)
    beam_emb = np.random.default_rng(seed + 2).normal(size=(1, 5, cfg.proj_size))
    beam_emb = beam_emb.astype(np.float32)
    beam_logits, logits, span_mask, _, _ = OpenQAModel(cfg).apply(
        params, q_ids, q_mask, beam_emb, ids[None], mask[None], types[None], block_mask[None]
    )
    with torch.no_grad():
        q = hf.embedder(_t(q_ids), _t(q_mask)).projected_score[0].numpy()
        seq = hf.reader.realm(_t(ids), _t(mask), _t(types)).last_hidden_state
        ref_logits = hf.reader.qa_outputs(seq, _t(block_mask))[0].numpy()
    ref_beam = beam_emb[0] @ q
    assert_parity(f"{tag}.retriever_logits", beam_logits[0], ref_beam)
    ref_logits = ref_logits + ref_beam[:3, None]
    assert_parity(f"{tag}.reader_logits", logits[0][span_mask[0]], ref_logits[span_mask[0]])


def test_openqa_checkpoint_round_trip(hf_cfg, cfg, tmp_path):
    """RealmForOpenQA saved by save_pretrained loads into OpenQAModel, reader and query tower."""
    hf = _randomised(modeling_realm.RealmForOpenQA(hf_cfg), 11)
    hf.save_pretrained(str(tmp_path), safe_serialization=False)  # safetensors refuses tied heads
    loaded_cfg, params = load_hf_realm(str(tmp_path), "openqa")
    assert loaded_cfg == cfg
    check_openqa(hf, params, cfg, "openqa", seed=12)
    sd = _state_dict(hf)
    assert "block_emb" in sd  # the index rides along in the port's state dict; not a parameter


def test_conversion_errors(hf_cfg, cfg):
    encoder = _randomised(modeling_realm.RealmKnowledgeAugEncoder(hf_cfg), 15)
    sd = _state_dict(encoder)
    with pytest.raises(ConversionError, match="unexpected tensors: extra.weight"):
        params_from_hf_realm({**sd, "extra.weight": np.zeros(3)}, cfg, "encoder")
    untied = dict(sd)
    untied["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1
    with pytest.raises(ConversionError, match="we tie the MLM decoder"):
        params_from_hf_realm(untied, cfg, "encoder")
    missing = {k: v for k, v in sd.items() if k != "cls.predictions.transform.dense.bias"}
    with pytest.raises(ConversionError, match=r"missing tensors: cls\.predictions\.transform"):
        params_from_hf_realm(missing, cfg, "encoder")
    separate = modeling_realm.RealmScorer(hf_cfg, modeling_realm.RealmEmbedder(hf_cfg))
    with pytest.raises(ConversionError, match="use share_embedders=False"):
        params_from_hf_realm(_state_dict(separate), cfg, "scorer")
    with pytest.raises(ValueError, match="kind='bert'"):
        params_from_hf_realm(sd, cfg, "bert")
