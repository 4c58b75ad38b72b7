"""realm_jax.reproduce.stats: the paired bootstrap behind the tables' intervals, and MRR."""

import numpy as np
import pytest

from realm_jax.reproduce import stats


def test_identical_systems_differ_by_zero():
    a = np.random.default_rng(1).random(50) < 0.4
    assert stats.paired_bootstrap(a, a) == {"estimate": 0.0, "ci95": [0.0, 0.0]}


def test_a_constant_shift_is_its_own_interval():
    b = np.random.default_rng(2).random(40)
    out = stats.paired_bootstrap(b + 0.25, b, scale=1.0)
    assert out["estimate"] == pytest.approx(0.25)
    np.testing.assert_allclose(out["ci95"], [0.25, 0.25])
    # scale: 100 (the default) turns fractions into percentage points
    assert stats.paired_bootstrap(b + 0.25, b)["estimate"] == pytest.approx(25.0)


def test_one_more_hit_of_n():
    n = 20
    b = np.zeros(n, bool)
    a = b.copy()
    a[3] = True
    out = stats.paired_bootstrap(a, b)
    assert out["estimate"] == pytest.approx(100.0 / n)
    lo, hi = out["ci95"]
    assert lo == 0.0 and 100.0 / n < hi <= 100.0  # a resample holds the question 0, 1, 2... times
    flipped = stats.paired_bootstrap(b, a)  # b - a: the sign flips, the interval mirrors
    assert flipped["estimate"] == pytest.approx(-out["estimate"])
    np.testing.assert_allclose(flipped["ci95"], [-hi, -lo])


def test_deterministic_for_a_seed_and_interval_contains_estimate():
    rng = np.random.default_rng(3)
    a, b = rng.random(200) < 0.5, rng.random(200) < 0.4
    first = stats.paired_bootstrap(a, b, resamples=2_500, seed=7)
    assert stats.paired_bootstrap(a, b, resamples=2_500, seed=7) == first
    assert stats.paired_bootstrap(a, b, resamples=2_500, seed=8) != first
    lo, hi = first["ci95"]
    assert lo < first["estimate"] < hi
    assert first["estimate"] == pytest.approx(100.0 * (a.mean() - b.mean()))
    # Resamples drawn in chunks: a count that is not a multiple of the chunk works the same way.
    odd = stats.paired_bootstrap(a, b, resamples=stats._CHUNK + 1, seed=7)
    assert odd["ci95"][0] <= odd["estimate"] <= odd["ci95"][1]


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([1, 0, 1], [1, 0], "1-D of one length"),
        ([[1, 0]], [[1, 0]], "1-D of one length"),
        ([], [], "empty"),
    ],
)
def test_bad_shapes_raise(a, b, match):
    with pytest.raises(ValueError, match=match):
        stats.paired_bootstrap(a, b)


def test_no_resamples_raise():
    with pytest.raises(ValueError, match="resamples=0"):
        stats.paired_bootstrap([1, 0], [0, 0], resamples=0)


def test_reciprocal_ranks():
    hits = [
        [False, True, False, True],  # first relevant at rank 2
        [True, False, False, False],  # rank 1
        [False, False, False, False],  # none: 0
        [False, False, False, True],  # rank 4
    ]
    np.testing.assert_allclose(stats.reciprocal_ranks(hits), [0.5, 1.0, 0.0, 0.25])
    assert stats.mean_reciprocal_rank(hits) == pytest.approx(1.75 / 4)
    np.testing.assert_array_equal(stats.reciprocal_ranks(np.zeros((3, 0), bool)), [0.0] * 3)
    assert stats.mean_reciprocal_rank(np.zeros((0, 5), bool)) == 0.0
    with pytest.raises(ValueError, match="questions, ranks"):
        stats.reciprocal_ranks([True, False])
