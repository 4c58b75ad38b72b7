"""DeltaSearcher: the frozen main index plus added rows, minus dead ones, equals exact search
over the live rows (ids and scores; float32, the same dot products: 1e-6 relative)."""

import numpy as np
import pytest

from realm_jax.index.delta import DeltaSearcher, StackedRows
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.searcher import numpy_top_k


@pytest.mark.parametrize("num_dead", [0, 3, 40])
def test_delta_search_is_exact_over_live_rows(num_dead):
    rng = np.random.default_rng(num_dead)
    main = rng.normal(size=(64, 8)).astype(np.float32)
    extra = rng.normal(size=(12, 8)).astype(np.float32)
    rows = np.concatenate([main, extra])
    dead = np.zeros(len(rows), bool)
    dead[rng.choice(len(rows), num_dead, replace=False)] = True
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    searcher = DeltaSearcher(ExactSearcher(main), extra, dead)
    scores, ids = searcher.search(queries, 10)
    live = np.flatnonzero(~dead)
    true_scores, true_pos = numpy_top_k(queries, rows[live], 10)
    np.testing.assert_array_equal(ids, live[true_pos])
    np.testing.assert_allclose(scores, true_scores, rtol=1e-6)
    assert not dead[ids].any()


def test_fewer_live_rows_than_k_pad_with_minus_one():
    main = np.eye(4, dtype=np.float32)
    dead = np.array([True, True, True, False, False])
    searcher = DeltaSearcher(ExactSearcher(main), np.ones((1, 4), np.float32), dead)
    scores, ids = searcher.search(np.ones((1, 4), np.float32), 4)
    assert ids.tolist() == [[4, 3, -1, -1]] and np.isinf(scores[0, 2:]).all()


def test_stacked_rows_gather_from_both_parts():
    main, extra = np.arange(6.0).reshape(3, 2), np.arange(10.0, 14.0).reshape(2, 2)
    rows = StackedRows(main, extra)
    assert rows.shape == (5, 2) and len(rows) == 5
    np.testing.assert_array_equal(rows[np.array([[4, 0], [3, 2]])],
                                  np.concatenate([main, extra])[[[4, 0], [3, 2]]])
