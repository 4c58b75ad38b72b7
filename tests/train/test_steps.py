"""pmap over 8 simulated devices equals one device on the same global batch, for all three steps.

Tolerance 1e-5: both runs do the same float32 math, only the order of the cross-device sums
differs (~1e-7 relative); a wrong normalisation or local-only negatives is off by >1e-2. lr is
1e-3 because Adam divides by sqrt(v): a gradient that is pure float noise (a LayerNorm bias whose
ICT gradient cancels by symmetry) becomes a step of random sign whose size scales with lr
(measured: 1.4e-5 at lr 1e-2, 2.9e-7 at 1e-3, against updates of 1.7e-2 and 1.7e-3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realm_jax.losses import realm_mlm_loss
from realm_jax.run.state import TrainState, bert_adamw
from realm_jax.train import ict, openqa, realm
from realm_jax.train.steps import make_eval_step
from realm_jax.utils.devices import replicate, shard, unreplicate

STEPS = 3
TOL = dict(rtol=1e-5, atol=1e-5)
STEP_FNS = {"ict": ict.train_step, "realm": realm.train_step, "openqa": openqa.train_step}


def _run(kind, model, params, batches, num_devices):
    """STEPS steps on ``num_devices`` devices -> (metrics per step, final params)."""
    devices = jax.local_devices()[:num_devices]
    tx = bert_adamw(1e-3, num_train_steps=10, num_warmup_steps=1)
    state = replicate(TrainState.create(params, tx), devices)
    step = STEP_FNS[kind](model)
    rngs = jax.random.split(jax.random.PRNGKey(1), num_devices)
    history = []
    for batch in batches:
        state, metrics = step(state, shard(batch, num_devices), rngs)
        history.append(jax.tree.map(np.asarray, unreplicate(metrics)))
    assert int(unreplicate(state.step)) == len(batches)
    return history, jax.tree.map(np.asarray, unreplicate(state.params))


@pytest.mark.parametrize("kind", ["ict", "realm", "openqa"])
def test_eight_devices_equal_one(
    kind, num_devices, step_config, make_batch, init_model, traces
):
    rng = np.random.default_rng({"ict": 0, "realm": 1, "openqa": 2}[kind])
    batches = [make_batch(kind, rng) for _ in range(STEPS)]
    model, params = init_model(kind, step_config, batches[0])
    start = jax.tree.map(np.asarray, params)
    traces.clear()
    one_hist, one_params = _run(kind, model, params, batches, 1)
    assert traces == [kind], "the step must compile once for the whole run"
    many_hist, many_params = _run(kind, model, params, batches, num_devices)
    worst = {"metrics": 0.0, "params": 0.0}
    for one, many in zip(one_hist, many_hist, strict=True):
        assert set(one) == set(many)
        for name in one:
            np.testing.assert_allclose(many[name], one[name], err_msg=name, **TOL)
            worst["metrics"] = max(worst["metrics"], float(np.abs(many[name] - one[name])))
    for path, a in jax.tree_util.tree_leaves_with_path(one_params):
        b = many_params
        for key in path:
            b = b[key.key]
        np.testing.assert_allclose(b, a, err_msg=jax.tree_util.keystr(path), **TOL)
        worst["params"] = max(worst["params"], float(np.abs(b - a).max()))
    losses = [float(h["loss"]) for h in one_hist]
    print(f"{kind}: 8 vs 1 device, max |diff| {worst}; loss per step {losses}")
    # The updates are real (lr 0 only on step 0), and the losses finite and positive.
    moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(one_params),
                                                 jax.tree.leaves(start), strict=True)]
    assert max(moved) > 1e-3
    assert all(np.isfinite(v) and v > 0 for v in losses)


def test_dropout_follows_the_rng(num_devices, step_config, make_batch, init_model):
    """Training steps run with dropout on: the same rng repeats a step, another rng changes it."""
    bert = step_config.bert.replace(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    batch = make_batch("ict", np.random.default_rng(3))
    model, params = init_model("ict", step_config.replace(bert=bert), batch)
    state = replicate(TrainState.create(params, bert_adamw(1e-3, 10, 1)))
    step = ict.train_step(model, donate=False)

    def loss(seed):
        rngs = jax.random.split(jax.random.PRNGKey(seed), num_devices)
        return float(unreplicate(step(state, shard(batch), rngs)[1])["loss"])

    assert loss(0) == loss(0) != loss(1)


def test_realm_eval_step_gives_global_means(num_devices, step_config, make_batch, init_model):
    """Eval on 8 devices equals the loss of the whole batch computed in one piece, unsharded."""
    batch = make_batch("realm", np.random.default_rng(3))
    model, params = init_model("realm", step_config, batch)
    keys = ("query_ids", "query_mask", "cand_ids", "cand_mask", "cand_type_ids", "joint_ids",
            "joint_mask", "joint_type_ids", "mlm_positions")
    logits, mlm_logits = jax.jit(model.apply)(params, *(batch[k] for k in keys))
    loss, sums = realm_mlm_loss(
        logits, batch["cand_valid"], mlm_logits, batch["mlm_targets"], batch["mlm_mask"]
    )
    eval_step = make_eval_step(realm.loss_fn(model), realm.METRICS)
    metrics = unreplicate(eval_step(replicate(params), shard(batch, num_devices)))
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        metrics["retrieval_utility"], sums["retrieval_utility_sum"] / sums["num_masks"], 1e-5, 1e-5
    )
    assert float(metrics["num_masks"]) == float(jnp.sum(batch["mlm_mask"])) == 15
