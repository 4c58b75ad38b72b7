"""BERT's optimiser recipe: warmup then linear decay, no decay on biases / LayerNorm, clipping."""

import jax
import jax.numpy as jnp
import numpy as np

from realm_jax.run.state import (
    TrainState,
    bert_adamw,
    bert_learning_rate,
    bert_warmup_steps,
    weight_decay_mask,
)


def test_schedule_matches_bert():
    lr = bert_learning_rate(1e-3, num_train_steps=100, num_warmup_steps=10)
    got = [float(lr(s)) for s in (0, 5, 9, 10, 50, 100, 150)]
    # Warmup: lr * step / warmup. After: lr * (1 - step / total) on the *global* step (so 0.9 lr
    # right after warmup, as in BERT's optimization.py), and 0 from the last step on.
    np.testing.assert_allclose(got, [0.0, 5e-4, 9e-4, 9e-4, 5e-4, 0.0, 0.0], atol=1e-9)
    assert [bert_warmup_steps(n) for n in (50, 20_000, 200_000)] == [100, 2000, 10000]


def test_weight_decay_skips_biases_and_layer_norms():
    params = {"dense": {"kernel": 1.0, "bias": 1.0}, "LayerNorm": {"scale": 1.0, "bias": 1.0},
              "embeddings": {"embedding": 1.0}}
    assert weight_decay_mask(params) == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm": {"scale": False, "bias": False},
        "embeddings": {"embedding": True},
    }


def test_adamw_step_clips_and_decays():
    params = {"w": {"kernel": jnp.full((2,), 2.0)}, "n": {"scale": jnp.full((2,), 2.0)}}
    state = TrainState.create(params, bert_adamw(0.1, num_train_steps=10, num_warmup_steps=1))
    huge = jax.tree.map(lambda x: 1e6 * jnp.ones_like(x), params)
    state = state.apply_gradients(huge)  # step 0: lr 0, nothing moves
    np.testing.assert_array_equal(state.params["w"]["kernel"], 2.0)
    state = state.apply_gradients(jax.tree.map(jnp.zeros_like, params))
    # Zero gradient: Adam's step is its momentum (clipped grads, so bounded) plus decay on kernels.
    kernel, scale = state.params["w"]["kernel"], state.params["n"]["scale"]
    assert int(state.step) == 2 and np.all(kernel < scale) and np.all(scale < 2.0)
    clipped = 1e6 / np.sqrt(4 * 1e12)  # global norm 2e6 clipped to 1: each entry 0.5
    m = 0.9 * 0.1 * clipped / (1 - 0.9**2)  # bias-corrected moments after two steps
    v = 0.999 * 0.001 * clipped**2 / (1 - 0.999**2)
    step = 0.1 * 0.9 * m / (np.sqrt(v) + 1e-6)  # lr at step 1 = 0.1 * (1 - 1/10)
    np.testing.assert_allclose(scale, 2.0 - step, rtol=1e-5)
    np.testing.assert_allclose(kernel, 2.0 - step - 0.1 * 0.9 * 0.01 * 2.0, rtol=1e-5)
