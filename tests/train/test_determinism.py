"""The same tiny config and seed train bit-identically run to run on CPU: the same losses in
``metrics.jsonl`` and the same final parameters, with dropout on and batches drawn by step."""

import json
import os

import jax
import numpy as np
import pytest

from realm_jax.run import defaults, model_setup
from realm_jax.run.files import METRICS_FILE
from realm_jax.train import ict


def _ict_run(root) -> tuple[list, dict]:
    """A 3-step tiny ICT run in ``root/run`` (its block cache beside it, in ``root/cache``)."""
    config = defaults.shrink_to_tiny(defaults.ict_config())
    config.num_train_steps, config.model.num_hidden_layers = 3, 1  # one layer: half the compile
    config.index.publish_final = False
    workdir = os.path.join(root, "run")
    ict.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        losses = [(r["step"], r["loss"]) for r in map(json.loads, f) if r["split"] == "train"]
    _, params, step = model_setup.restore_run_params(workdir)
    assert step == 3
    return losses, params


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree.leaves_with_path(tree)}


@pytest.mark.slow
def test_tiny_ict_is_bit_identical_run_to_run(tmp_path):
    config = defaults.shrink_to_tiny(defaults.ict_config())
    assert model_setup.bert_config(config.model).hidden_dropout_prob > 0  # dropout is on
    losses, params = _ict_run(tmp_path / "a")
    again, params_again = _ict_run(tmp_path / "b")  # its own block cache too
    assert [s for s, _ in losses] == [1, 2, 3] and len({loss for _, loss in losses}) == 3
    assert again == losses  # exactly: the same float bits, not merely close
    first, second = _leaves(params), _leaves(params_again)
    assert list(first) == list(second) and len(first) > 10
    differ = [k for k in first if not np.array_equal(first[k], second[k])]
    assert not differ, f"parameters differ run to run: {differ[:5]}"
    initial = _leaves(model_setup.random_params(config, jax.random.PRNGKey(config.seed)))
    assert any(not np.array_equal(initial[k], first[k]) for k in first)  # training moved them
