"""ICT batches: query sentence, positive block with the sentence removed 90% of the time."""

import numpy as np
import pytest

from realm_jax.data.ict import ict_batch, ict_batches
from realm_jax.train import ict

KEYS = {"query_ids", "query_mask", "block_ids", "block_mask", "block_type_ids"}


def _multi_sentence_block(store):
    return next(i for i in range(len(store)) if len(store.sentence_token_starts(i)) >= 3)


def test_batch_layout(mini_store):
    block = _multi_sentence_block(mini_store)
    batch = ict_batch(mini_store, [block, block], [1, 1], [True, False], 64, 288)
    assert set(batch) == KEYS
    for key, value in batch.items():
        assert value.dtype == np.int32
        assert value.shape == (2, 64 if key.startswith("query") else 288)
    ids = mini_store.token_ids(block)
    starts = np.append(mini_store.sentence_token_starts(block), len(ids))
    sentence = ids[starts[1] : starts[2]]
    q = batch["query_ids"][0]
    assert q[0] == 101 and q[len(sentence[:62]) + 1] == 102
    assert q[1 : 1 + len(sentence[:62])].tolist() == sentence[:62].tolist()
    assert batch["query_mask"][0].sum() == min(len(sentence), 62) + 2
    title = mini_store.title_ids(block)
    removed = np.concatenate([ids[: starts[1]], ids[starts[2] :]])
    for row, body in ((0, removed), (1, ids)):
        b = batch["block_ids"][row]
        n = batch["block_mask"][row].sum()
        assert b[: len(title) + 2].tolist() == [101, *title.tolist(), 102]
        assert b[len(title) + 2 : n - 1].tolist() == body[: 288 - 3 - len(title)].tolist()
        assert batch["block_type_ids"][row].sum() == n - len(title) - 2


def test_batches_distinct_blocks_and_removal_rate(mini_store):
    stream = ict_batches(mini_store, batch_size=32, seed=0, query_len=32, block_len=128)
    removed = total = 0
    for _ in range(12):  # ~2 epochs of the 200-passage store
        batch = next(stream)
        assert batch["query_ids"].shape == (32, 32) and batch["block_ids"].shape == (32, 128)
        assert len({row.tobytes() for row in batch["block_ids"]}) == 32
        for q, qm, b in zip(
            batch["query_ids"], batch["query_mask"], batch["block_ids"], strict=True
        ):
            query = q[1 : qm.sum() - 1]
            windows = np.lib.stride_tricks.sliding_window_view(b, len(query))
            removed += not np.any(np.all(windows == query, axis=1))
            total += 1
    # Removal probability 0.9, a little under it because a query may also occur elsewhere.
    assert 0.8 < removed / total < 0.95, removed / total


def test_too_large_batch_is_an_error(mini_store):
    with pytest.raises(ValueError, match="exceeds"):
        next(ict_batches(mini_store, batch_size=10_000))


def test_batch_runs_through_the_ict_step(mini_store, tiny_bert_config, num_devices):
    import jax

    from realm_jax.models.realm import init_params
    from realm_jax.models.retriever import Retriever
    from realm_jax.train.steps import make_eval_step
    from realm_jax.utils.devices import replicate, shard

    batch = next(ict_batches(mini_store, batch_size=16, query_len=16, block_len=48))
    model = Retriever(tiny_bert_config, proj_size=16)
    one = {k: v[:1] for k, v in batch.items()}
    params = init_params(
        model,
        jax.random.PRNGKey(0),
        one["query_ids"],
        one["query_mask"],
        one["block_ids"][:, None],
        one["block_mask"][:, None],
    )
    step = make_eval_step(ict.loss_fn(model), ict.METRICS)
    metrics = step(replicate(params), shard(batch, num_devices))
    loss = float(np.asarray(metrics["loss"])[0])
    assert np.isfinite(loss) and abs(loss - np.log(16)) < 1.0  # untrained: ~uniform over 16
