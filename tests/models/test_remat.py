"""``remat``: recomputing each BERT layer in the backward pass changes memory, not the math.

The same parameters (names and shapes) and, with dropout on and the same keys, the same loss and
gradients as without, for the REALM pre-training model (retriever towers and encoder). float32:
the recomputed forward runs the same ops, fused and summed in another order, so the loss agrees
to 1e-5 relative and the gradient, as one vector, to 1e-5 in relative L2 norm (elementwise, some
gradients that are zero in exact arithmetic differ at the 1e-7 rounding level of the others).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import RealmConfig, RealmPretrainModel, init_params

pytestmark = pytest.mark.slow  # a minute of compiling both variants: `make test-slow`


def _batch(rng, b=2, k=3, q=8, c=10, j=16, m=3):
    ids = lambda *s: rng.integers(5, 1000, s).astype(np.int32)
    return (ids(b, q), np.ones((b, q), np.int32), ids(b, k, c), np.ones((b, k, c), np.int32),
            np.zeros((b, k, c), np.int32), ids(b, k, j), np.ones((b, k, j), np.int32),
            np.zeros((b, k, j), np.int32), rng.integers(1, 7, (b, m)).astype(np.int32))


def _loss(model):
    def loss(params, args, key):
        logits, mlm_logits = model.apply(params, *args, deterministic=False,
                                         rngs={"dropout": key})
        return jnp.sum(jax.nn.log_softmax(logits)) + jnp.mean(jax.nn.log_softmax(mlm_logits))
    return jax.jit(jax.value_and_grad(loss))


def test_remat_keeps_parameters_loss_and_gradients():
    args = _batch(np.random.default_rng(0))
    config = RealmConfig(tiny_config(), proj_size=16, share_embedders=False)
    plain = RealmPretrainModel(config)
    remat = RealmPretrainModel(config.replace(remat=True))
    params = init_params(plain, jax.random.PRNGKey(0), *args)
    shapes = lambda p: jax.tree.map(lambda x: x.shape, p)
    assert shapes(init_params(remat, jax.random.PRNGKey(0), *args)) == shapes(params)
    key = jax.random.PRNGKey(1)
    loss, grads = _loss(plain)(params, args, key)
    loss_r, grads_r = _loss(remat)(params, args, key)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-5)
    flat = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
    g, g_r = flat(grads), flat(grads_r)
    assert np.linalg.norm(g_r - g) <= 1e-5 * np.linalg.norm(g)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))  # gradients reach BERT
