"""Knowledge-augmented encoder (MLM at masked positions) and ORQA's span reader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realm_jax.models.reader import KnowledgeAugEncoder, SpanReader, span_candidates


@pytest.fixture(scope="module")
def joint(tokenizer):
    """[CLS] x [SEP] z_body [SEP] for 2 queries x 2 candidates, [batch, k, 20]."""
    queries = ["the [MASK] [MASK] fell in 1989.", "[MASK] wrote on the origin of species."]
    bodies = ["the berlin wall fell.", "", "", "charles darwin, 1859."]
    enc = tokenizer.encode_pairs([q for q in queries for _ in range(2)], bodies, 20)
    return {k: v.reshape(2, 2, 20) for k, v in enc.items()}


def test_encoder_scores_only_the_masked_positions(tiny_bert_config, joint):
    model = KnowledgeAugEncoder(tiny_bert_config)
    ids, mask, types = joint["input_ids"], joint["input_mask"], joint["token_type_ids"]
    every = np.broadcast_to(np.arange(20), (2, 2, 20))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids, mask, types, every)
    assert set(params["params"]["mlm_head"]) == {"transform_dense", "transform_LayerNorm", "bias"}
    full = model.apply(params, ids, mask, types, every)  # [2, 2, 20, vocab]
    assert full.shape == (2, 2, 20, tiny_bert_config.vocab_size)
    positions = np.array([[2, 3], [1, 1]])  # the second query has one mask, padded by repeating
    some = model.apply(params, ids, mask, types, np.broadcast_to(positions[:, None], (2, 2, 2)))
    for b in range(2):
        np.testing.assert_allclose(some[b], full[b][:, positions[b]], atol=1e-5)


def test_mlm_decoder_is_tied_to_the_word_embeddings(tiny_bert_config, joint):
    """No separate [vocab, hidden] decoder exists: logits move with the input embeddings."""
    model = KnowledgeAugEncoder(tiny_bert_config)
    ids, mask, types = joint["input_ids"], joint["input_mask"], joint["token_type_ids"]
    pos = np.zeros((2, 2, 1), np.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids, mask, types, pos)
    vocab_sized = [
        x.shape for x in jax.tree.leaves(params) if tiny_bert_config.vocab_size in x.shape
    ]
    assert sorted(vocab_sized) == [(tiny_bert_config.vocab_size,), (30522, 32)]  # bias, embedding
    grads = jax.jit(jax.grad(lambda p: model.apply(p, ids, mask, types, pos)[..., 7].sum()))(params)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(grads)}
    emb_grad = next(v for k, v in flat.items() if v.shape == (30522, 32))
    # Token 7 never occurs in the input, so only the tied decoder can give its row a gradient.
    assert not np.any(ids == 7) and np.abs(emb_grad[7]).max() > 0


def test_span_candidates_follow_orqa_order():
    starts, ends = span_candidates(5, 3)
    expected = [(s, s + w - 1) for w in (1, 2, 3) for s in range(5 - w + 1)]
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == expected
    assert len(span_candidates(4, 10)[0]) == 4 + 3 + 2 + 1  # widths beyond the sequence vanish


def test_span_reader_masks_spans_outside_the_block(tiny_bert_config, joint, tokenizer):
    keys = ("input_ids", "input_mask", "token_type_ids")
    ids, mask, types = (joint[k].reshape(4, 20) for k in keys)
    block_mask = (types == 1) & (ids != tokenizer.sep_id) & (mask == 1)  # body tokens only
    model = SpanReader(tiny_bert_config, span_hidden_size=8, max_span_width=3)
    retr = jnp.array([0.0, 1.0, -2.0, 0.5])
    params = model.init(jax.random.PRNGKey(0), ids, mask, types, block_mask, retr)
    logits, span_mask, starts, ends = model.apply(params, ids, mask, types, block_mask, retr)
    assert logits.shape == span_mask.shape == (4, len(starts))
    inside = block_mask[:, np.asarray(starts)] & block_mask[:, np.asarray(ends)]
    np.testing.assert_array_equal(span_mask, inside)
    assert not span_mask[1].any() and not span_mask[2].any()  # empty bodies: no span at all
    assert np.all(np.asarray(logits)[~inside] == np.finfo(np.float32).min)
    # The retriever logit is added to every span of its block.
    shifted, _, _, _ = model.apply(params, ids, mask, types, block_mask, retr + 3.0)
    np.testing.assert_allclose(shifted[span_mask], (logits + 3.0)[span_mask], atol=1e-5)
    # Leading dimensions [batch, reader_beam, seq] give [batch, reader_beam, S].
    two_d = (x.reshape(2, 2, 20) for x in (ids, mask, types, block_mask))
    batched, _, _, _ = model.apply(params, *two_d, retr.reshape(2, 2))
    np.testing.assert_allclose(batched.reshape(4, -1), logits, atol=1e-5)
