"""Partial freezing (``optim.trainable``) and REALM's control run (``realm.retriever_gradient``):
frozen parameters stay bit for bit where they started, the others move.

Bitwise equality is the right tolerance here: a frozen leaf gets a zero gradient (stop_gradient)
and no weight decay, and Adam's update of a zero gradient is exactly zero.
"""

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from realm_jax.run.model_setup import decayed_predicate
from realm_jax.run.state import (
    TrainState,
    bert_adamw,
    lr_scale_predicate,
    param_path,
    trainable_predicate,
)
from realm_jax.train import realm
from realm_jax.utils.devices import replicate, shard, unreplicate

STEPS = 3


def _train(model, params, batches, step_fn, decayed):
    devices = jax.local_devices()[:2]
    tx = bert_adamw(1e-3, num_train_steps=10, num_warmup_steps=1, trainable=decayed)
    state = replicate(TrainState.create(params, tx), devices)
    rngs = jax.random.split(jax.random.PRNGKey(1), len(devices))
    for batch in batches:
        state, _ = step_fn(state, shard(batch, len(devices)), rngs)
    return unreplicate(state).params


def _moved(before, after) -> dict[str, bool]:
    flat_a = jax.tree_util.tree_flatten_with_path(before)[0]
    flat_b = jax.tree_util.tree_leaves(after)
    pairs = zip(flat_a, flat_b, strict=True)
    return {param_path(p): not np.array_equal(a, b) for (p, a), b in pairs}


def _realm(step_config, make_batch, init_model):
    rng = np.random.default_rng(0)
    batches = [make_batch("realm", rng) for _ in range(STEPS)]
    model, params = init_model("realm", step_config, batches[0])
    return model, params, batches


def test_only_the_trainable_parameters_move(step_config, make_batch, init_model):
    model, params, batches = _realm(step_config, make_batch, init_model)
    pattern = r"encoder/(mlm_head|bert/layer_1)/"
    step = realm.train_step(model, donate=False, trainable=pattern)
    moved = _moved(params, _train(model, params, batches, step, trainable_predicate(pattern)))
    trainable = trainable_predicate(pattern)
    assert any(trainable(p) for p in moved) and not all(trainable(p) for p in moved)
    for path, changed in moved.items():
        if not trainable(path):
            assert not changed, path
    # Weights of every trainable dense kernel moved (biases may not all: some get no gradient).
    assert all(changed for p, changed in moved.items() if trainable(p) and p.endswith("kernel"))


@pytest.mark.slow
def test_the_control_run_leaves_the_retriever_exactly_as_it_started(
    step_config, make_batch, init_model
):
    model, params, batches = _realm(step_config, make_batch, init_model)
    config = ConfigDict({"stage": "realm", "optim": {"trainable": ""},
                         "realm": {"retriever_gradient": False}})
    step = realm.train_step(model, donate=False, retriever_gradient=False)
    moved = _moved(params, _train(model, params, batches, step, decayed_predicate(config)))
    retriever = {p: m for p, m in moved.items() if p.startswith("params/retriever/")}
    encoder = {p: m for p, m in moved.items() if p.startswith("params/encoder/")}
    assert retriever and not any(retriever.values())
    assert sum(encoder.values()) > len(encoder) // 2  # the encoder still learns
    # With the gradient (the REALM run), the same steps move the retriever.
    full = realm.train_step(model, donate=False)
    config.realm.retriever_gradient = True
    moved = _moved(params, _train(model, params, batches, full, decayed_predicate(config)))
    assert any(m for p, m in moved.items() if p.startswith("params/retriever/"))


def test_lr_scale_multiplies_the_steps_of_the_matched_parameters():
    params = {"params": {"head": {"kernel": np.ones(3)}, "bert": {"kernel": np.ones(3)}}}
    grads = jax.tree_util.tree_map(lambda p: np.array([0.5, -1.0, 2.0]), params)
    plain = bert_adamw(1e-3, 10, 1)
    scaled = bert_adamw(1e-3, 10, 1, lr_scale=lr_scale_predicate("/head/", 10.0))
    base, _ = plain.update(grads, plain.init(params), params)
    more, _ = scaled.update(grads, scaled.init(params), params)
    # float32 products: one rounding apart at most (~1e-7 relative).
    np.testing.assert_allclose(more["params"]["head"]["kernel"],
                               10.0 * base["params"]["head"]["kernel"], rtol=1e-6)
    bert = more["params"]["bert"]["kernel"], base["params"]["bert"]["kernel"]
    np.testing.assert_array_equal(*bert)
    assert lr_scale_predicate("", 10.0) is None and lr_scale_predicate("x", 1.0) is None
