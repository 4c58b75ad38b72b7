"""Batches are pure functions of the seed and the step; each process reads its own rows."""


import jax
import numpy as np
import pytest

from realm_jax.data import input_pipeline
from realm_jax.data.blocks import BlockStore
from realm_jax.run import defaults


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tokenizer):
    config = defaults.shrink_to_tiny(defaults.ict_config())
    directory = str(tmp_path_factory.mktemp("blocks") / "blocks")
    return config, input_pipeline.prepare_blocks(config, directory, tokenizer)


def test_ict_batches_depend_only_on_seed_and_step(small_store):
    config, store = small_store
    assert isinstance(store, BlockStore) and len(store) > config.batch_size
    batches = input_pipeline.IctBatches(store, config)
    first, again, other = batches(3), batches(3), batches(4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["block_ids"], other["block_ids"])
    assert first["query_ids"].shape == (config.batch_size, config.ict.query_len)
    assert jax.process_count() == 1 and input_pipeline.process_rows(8) == slice(0, 8)
    with pytest.raises(ValueError, match="batch_size=12 is not a multiple of the 8 devices"):
        input_pipeline.process_rows(12)


def test_question_order_covers_each_epoch_once():
    order = np.concatenate([input_pipeline.question_indices(10, s, 4, seed=0) for s in range(5)])
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    np.testing.assert_array_equal(
        input_pipeline.question_indices(10, 2, 4, 0), order[8:12]
    )  # step 2 alone = the same questions


