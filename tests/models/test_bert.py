import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from realm_jax.models.bert import (
    ACTIVATIONS,
    BertConfig,
    BertModel,
    attention_batch_chunk,
    attention_bias,
)
from realm_jax.utils.devices import replicate, shard, unshard


def _batch(tokenizer, texts, max_len=24):
    return tokenizer.encode(texts, max_len)


def _init(cfg, batch, **kw):
    model = BertModel(cfg, **kw)
    params = model.init(jax.random.PRNGKey(0), batch["input_ids"], batch["input_mask"])
    return model, params


def test_shapes_and_param_tree(tokenizer, tiny_bert_config, passages32):
    b = _batch(tokenizer, [p["text"] for p in passages32[:3]])
    model, params = _init(tiny_bert_config, b)
    seq, pooled = model.apply(params, b["input_ids"], b["input_mask"], b["token_type_ids"])
    assert seq.shape == (3, 24, 32) and pooled.shape == (3, 32)
    p = params["params"]
    assert set(p) == {"embeddings", "layer_0", "layer_1", "pooler"}
    assert set(p["layer_0"]["attention"]) == {"query", "key", "value"}
    assert p["embeddings"]["word_embeddings"]["embedding"].shape == (30522, 32)


def test_padding_does_not_change_real_tokens(tokenizer, tiny_bert_config):
    """Extra padding must be invisible to the real tokens (the attention bias masks it)."""
    texts = ["the quick brown fox", "a much longer sentence about the denver broncos"]
    short, long = _batch(tokenizer, texts, 16), _batch(tokenizer, texts, 40)
    model, params = _init(tiny_bert_config, short)
    s_seq, s_pool = model.apply(params, short["input_ids"], short["input_mask"])
    l_seq, l_pool = model.apply(params, long["input_ids"], long["input_mask"])
    for i, n in enumerate(short["input_mask"].sum(1)):
        np.testing.assert_allclose(s_seq[i, :n], l_seq[i, :n], atol=1e-5)
    np.testing.assert_allclose(s_pool, l_pool, atol=1e-5)


def test_dropout_only_in_training(tokenizer, tiny_bert_config):
    b = _batch(tokenizer, ["salient span masking", "inverse cloze task"])
    model, params = _init(tiny_bert_config, b)
    run = lambda det, seed: model.apply(
        params,
        b["input_ids"],
        b["input_mask"],
        deterministic=det,
        rngs={"dropout": jax.random.PRNGKey(seed)},
    )[0]
    np.testing.assert_array_equal(run(True, 1), run(True, 2))
    assert not np.allclose(run(False, 1), run(False, 2))


def test_activations_match_their_formulas():
    x = np.linspace(-6.0, 6.0, 241).astype(np.float32)
    exact = 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    tanh = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ACTIVATIONS["gelu"](jnp.asarray(x, jnp.float32)), exact, atol=1e-6)
    np.testing.assert_allclose(
        ACTIVATIONS["gelu_new"](jnp.asarray(x, jnp.float32)), tanh, atol=1e-6
    )
    np.testing.assert_array_equal(ACTIVATIONS["relu"](jnp.asarray(x)), np.maximum(x, 0.0))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="hidden_act='swish'"):
        BertConfig(hidden_act="swish")
    with pytest.raises(ValueError, match="not divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)


def test_bfloat16_compute(tokenizer, tiny_bert_config):
    """bf16 activations with float32 params stay close to float32 (bf16: ~3 significant digits)."""
    b = _batch(tokenizer, ["retrieval augmented language model pre-training"])
    m32, params = _init(tiny_bert_config, b)
    m16 = BertModel(tiny_bert_config, dtype=jnp.bfloat16)
    seq32, _ = m32.apply(params, b["input_ids"], b["input_mask"])
    seq16, _ = m16.apply(params, b["input_ids"], b["input_mask"])
    assert seq16.dtype == jnp.bfloat16
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    # LayerNorm-normalised outputs are O(1); bf16 rounding over 2 layers stays well under 0.1.
    assert float(jnp.max(jnp.abs(seq16.astype(jnp.float32) - seq32))) < 0.1


def test_attention_bias():
    bias = attention_bias(jnp.array([[1, 1, 0]]), jnp.float32)
    assert bias.shape == (1, 1, 1, 3)
    assert bias[0, 0, 0, 0] == 0 and bias[0, 0, 0, 2] == jnp.finfo(jnp.float32).min


def test_pmap_equals_single_device(tokenizer, tiny_bert_config, passages32, num_devices):
    """The forward pass under pmap over 8 devices equals the single-device one (<= 1e-6)."""
    b = _batch(tokenizer, [p["text"] for p in passages32[:16]], 32)
    model, params = _init(tiny_bert_config, b)
    fwd = lambda p, ids, mask, tt: model.apply(p, ids, mask, tt)
    seq, pooled = jax.jit(fwd)(params, b["input_ids"], b["input_mask"], b["token_type_ids"])

    sb = shard(b)
    p_seq, p_pooled = jax.pmap(fwd, axis_name="batch")(
        replicate(params), sb["input_ids"], sb["input_mask"], sb["token_type_ids"]
    )
    assert p_seq.shape[:2] == (num_devices, 2)
    np.testing.assert_allclose(unshard(p_seq), seq, atol=1e-6, rtol=0)
    np.testing.assert_allclose(unshard(p_pooled), pooled, atol=1e-6, rtol=0)


def test_attention_batch_chunk():
    # MiniLM at 288 tokens: 12 heads x 288^2 x 4 B = 3.98 MB per example -> 1 per 4 MiB chunk.
    assert attention_batch_chunk(64, 12, 288, 4, 4 * 2**20) == 1
    assert attention_batch_chunk(64, 12, 128, 4, 4 * 2**20) == 4  # 5 fit; 4 divides 64
    assert attention_batch_chunk(6, 12, 128, 4, 4 * 2**20) == 3
    assert attention_batch_chunk(64, 12, 64, 4, 2**40) == 64


def test_chunked_attention_equals_unchunked(tokenizer, tiny_bert_config, passages32):
    """Batch-chunked attention (the CPU path) is the same math: equal to float32 rounding."""
    b = _batch(tokenizer, [p["text"] for p in passages32[:8]], 32)
    model, params = _init(tiny_bert_config, b)
    # 4 heads x 32^2 x 4 B = 16 KiB per example: a 40 KiB budget gives chunks of 2.
    chunked = BertModel(tiny_bert_config, attention_chunk_bytes=40 * 2**10)
    whole = BertModel(tiny_bert_config, attention_chunk_bytes=None)
    ref = whole.apply(params, b["input_ids"], b["input_mask"])
    out = chunked.apply(params, b["input_ids"], b["input_mask"])
    for r, o in zip(ref, out, strict=True):
        np.testing.assert_allclose(o, r, atol=1e-6, rtol=0)
    # Training mode runs too (attention dropout inside the chunk loop) and is reproducible.
    run = lambda m: m.apply(
        params,
        b["input_ids"],
        b["input_mask"],
        deterministic=False,
        rngs={"dropout": jax.random.PRNGKey(3)},
    )[0]
    np.testing.assert_array_equal(run(chunked), run(chunked))
    grads = jax.grad(lambda p: chunked.apply(p, b["input_ids"], b["input_mask"])[1].sum())(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("remat", [False, True])
def test_pooled_only_equals_the_full_last_layer(tokenizer, tiny_bert_config, passages32, remat):
    """pooled_only runs the last layer for [CLS] alone: the same pooled output (float32
    rounding: the [CLS] row's products are summed in other batches, ~1e-6) and the same gradients
    of it; sequence_output keeps position 0 only; training mode ignores it (full last layer,
    the same dropout masks)."""
    b = _batch(tokenizer, [p["text"] for p in passages32[:6]], 32)
    model, params = _init(tiny_bert_config, b, remat=remat)
    args = (b["input_ids"], b["input_mask"], b["token_type_ids"])
    seq, pooled = model.apply(params, *args)
    cls_seq, cls_pooled = model.apply(params, *args, pooled_only=True)
    assert cls_seq.shape == (6, 1, 32)
    np.testing.assert_allclose(cls_seq[:, 0], seq[:, 0], atol=2e-6, rtol=0)
    np.testing.assert_allclose(cls_pooled, pooled, atol=2e-6, rtol=0)
    loss = lambda only: lambda p: (model.apply(p, *args, pooled_only=only)[1] ** 2).sum()
    for g_full, g_cls in zip(jax.tree.leaves(jax.grad(loss(False))(params)),
                             jax.tree.leaves(jax.grad(loss(True))(params)), strict=True):
        np.testing.assert_allclose(g_cls, g_full, atol=2e-5, rtol=1e-4)
    train = lambda only: model.apply(params, *args, deterministic=False, pooled_only=only,
                                     rngs={"dropout": jax.random.PRNGKey(5)})
    for full, only in zip(train(False), train(True), strict=True):
        np.testing.assert_array_equal(only, full)


def test_feed_forward_in_row_chunks_equals_it_whole(tokenizer, tiny_bert_config, passages32):
    """The CPU feed-forward over row chunks (whole sequences, ~ffn_chunk_tokens tokens each, the
    last one shorter) has the parameters, outputs, gradients and dropout masks of the whole one:
    each token's feed-forward reads only that token (float32 rounding: the GEMMs of a chunk sum
    in another blocking, 1e-6 absolute on outputs of order 1)."""
    b = _batch(tokenizer, [p["text"] for p in passages32[:7]], 16)
    whole, params = _init(tiny_bert_config, b, ffn_chunk_tokens=None)
    chunked = BertModel(tiny_bert_config, ffn_chunk_tokens=48)  # 3 rows of 16: 3 + 3 + 1
    assert jax.tree.structure(chunked.init(jax.random.PRNGKey(0), b["input_ids"],
                                           b["input_mask"])) == jax.tree.structure(params)
    args = (b["input_ids"], b["input_mask"], b["token_type_ids"])
    for a, c in zip(whole.apply(params, *args), chunked.apply(params, *args), strict=True):
        np.testing.assert_allclose(c, a, atol=1e-6, rtol=0)
    loss = lambda m: lambda p: (m.apply(p, *args)[1] ** 2).sum()
    for g_whole, g_chunked in zip(jax.tree.leaves(jax.grad(loss(whole))(params)),
                                  jax.tree.leaves(jax.grad(loss(chunked))(params)), strict=True):
        np.testing.assert_allclose(g_chunked, g_whole, atol=1e-5, rtol=1e-5)
    train = lambda m: m.apply(params, *args, deterministic=False,
                              rngs={"dropout": jax.random.PRNGKey(5)})[0]
    np.testing.assert_allclose(train(chunked), train(whole), atol=1e-6, rtol=0)
