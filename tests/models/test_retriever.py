"""The retriever towers and f(x, z); numerical parity with the port lives in tests/convert."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realm_jax.models.retriever import Embedder, Retriever, retrieval_logits

QUERIES = ["who wrote the origin of species?", "when did the berlin wall fall?"]
DOCS = [
    ["charles darwin published on the origin of species in 1859.", "", "the wall fell in 1989."],
    ["", "east germany opened the berlin wall on 9 november 1989.", "darwin sailed on the beagle."],
]


@pytest.fixture(scope="module")
def inputs(tokenizer):
    q = tokenizer.encode(QUERIES, 16)
    flat = tokenizer.encode_pairs(["title"] * 6, [d for row in DOCS for d in row], 24)
    c = {k: v.reshape(2, 3, 24) for k, v in flat.items()}
    return q, c


def _init(cfg, q, c, share):
    model = Retriever(cfg, proj_size=8, share_embedders=share)
    args = (q["input_ids"], q["input_mask"], c["input_ids"], c["input_mask"], c["token_type_ids"])
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), *args), args


@pytest.mark.parametrize("share", [True, False])
def test_shapes_and_towers(tiny_bert_config, inputs, share):
    q, c = inputs
    model, params, args = _init(tiny_bert_config, q, c, share)
    towers = {"embedder"} if share else {"embedder", "query_embedder"}
    assert set(params["params"]) == towers
    assert set(params["params"]["embedder"]) == {"bert", "dense", "LayerNorm"}
    query_emb, cand_emb, logits = jax.jit(model.apply)(params, *args)
    assert query_emb.shape == (2, 8) and cand_emb.shape == (2, 3, 8) and logits.shape == (2, 3)
    np.testing.assert_allclose(
        logits, np.einsum("bd,bkd->bk", query_emb, cand_emb), rtol=1e-6, atol=1e-6
    )
    # Shared: a text embeds the same as query and as document; separate towers disagree.
    as_doc = model.apply(params, q["input_ids"], q["input_mask"], method=model.embed_docs)
    assert np.allclose(as_doc, query_emb, atol=1e-6) == share


def test_embedder_is_layer_normed_and_padding_blind(tiny_bert_config, tokenizer):
    short, long = tokenizer.encode(QUERIES, 16), tokenizer.encode(QUERIES, 40)
    model = Embedder(tiny_bert_config, proj_size=8)
    params = model.init(jax.random.PRNGKey(1), short["input_ids"], short["input_mask"])
    emb = model.apply(params, short["input_ids"], short["input_mask"])
    # Fresh LayerNorm (scale 1, bias 0): every embedding has mean 0 and variance 1.
    np.testing.assert_allclose(emb.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(emb.var(-1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(
        emb, model.apply(params, long["input_ids"], long["input_mask"]), atol=1e-5
    )


def test_gradients_reach_both_towers(tiny_bert_config, inputs):
    q, c = inputs
    model, params, args = _init(tiny_bert_config, q, c, share=False)
    objective = lambda p: jnp.sum(jax.nn.log_softmax(model.apply(p, *args)[2])[:, 1])
    grads = jax.jit(jax.grad(objective))(params)
    for tower in ("embedder", "query_embedder"):
        norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["params"][tower]))
        assert norm > 0.0, tower


def test_retrieval_logits_is_a_batched_inner_product():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(3, 5)), rng.normal(size=(3, 4, 5))
    expected = [[q[b] @ c[b, k] for k in range(4)] for b in range(3)]
    np.testing.assert_allclose(retrieval_logits(jnp.asarray(q), jnp.asarray(c)), expected, 1e-5)
