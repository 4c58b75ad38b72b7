"""Per-question statistics of the reproduction tables: paired bootstrap intervals and MRR.

Pure numpy functions of per-question arrays (one entry per question, the same questions in the
same order for the systems compared); the runner and report do the reading and writing.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000
SEED = 0
_CHUNK = 1_000  # resamples drawn at a time: memory [chunk, n] stays small for any n


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired arrays must be 1-D of one length, got {a.shape} and {b.shape}")
    if not a.size:
        raise ValueError("paired arrays are empty: no questions to compare")
    return a, b


def paired_bootstrap(
    a, b, resamples: int = RESAMPLES, seed: int = SEED, scale: float = 100.0
) -> dict:
    """``mean(a) - mean(b)`` and its 95% percentile interval under a paired bootstrap.

    ``a`` and ``b`` are per-question values of two systems on the same questions (0/1 hits, or
    floats such as reciprocal ranks). Each of ``resamples`` draws picks n question indices with
    replacement, the same ones for both systems, and takes the mean difference over them; the
    interval is the 2.5th and 97.5th percentile of those means. ``scale`` is the unit: 100 gives
    percentage points for 0/1 inputs, 1 keeps the inputs' own unit. Deterministic for a seed.
    Returns ``{"estimate": x, "ci95": [lo, hi]}``.
    """
    a, b = _paired(a, b)
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: must be >= 1")
    diff = a - b  # resampling paired questions = resampling their differences
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, np.float64)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        indices = rng.integers(0, diff.size, size=(count, diff.size))
        means[start : start + count] = diff[indices].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"estimate": float(scale * diff.mean()), "ci95": [float(scale * lo), float(scale * hi)]}


def reciprocal_ranks(hits) -> np.ndarray:
    """``hits`` [Q, k] bool (ranking position j of question q is relevant) -> [Q] floats:
    1 / (1-based rank of the first relevant position), 0 where none of the k is relevant."""
    hits = np.asarray(hits, bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be [questions, ranks], got shape {hits.shape}")
    if not hits.shape[1]:
        return np.zeros(hits.shape[0], np.float64)
    found = hits.any(axis=1)
    first = hits.argmax(axis=1)
    return np.where(found, 1.0 / (first + 1.0), 0.0)


def mean_reciprocal_rank(hits) -> float:
    """MRR over questions, as a fraction in [0, 1] (``reciprocal_ranks`` averaged); 0 if none."""
    ranks = reciprocal_ranks(hits)
    return float(ranks.mean()) if ranks.size else 0.0
