"""The pmapped train and eval steps every stage builds from its loss function.

A loss function is ``loss_fn(params, batch, rngs, deterministic) -> (loss, sums)``: ``loss`` is
this device's share of the global mean (``losses.device_share``), ``sums`` the batch sums that
metrics are made of. A step is ``step(state, batch, rng) -> (new_state, metrics)``, compiled once
by ``jax.pmap(..., axis_name="batch")``: leaves of ``state`` carry a leading device axis
(``devices.replicate``), ``batch`` leaves ``[devices, per_device, ...]`` (``devices.shard``) and
``rng`` one key per device. pmean'ed gradients of the shares, and psum'med metrics, equal a
one-device run on the same global batch. The batch keys of each stage are listed in its module
(``ict.py``, ``mlm.py``, ``realm.py``, ``openqa.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from realm_jax import losses
from realm_jax.run.state import TrainState, param_path, trainable_predicate
from realm_jax.utils.devices import AXIS

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
# metric name -> (psum'med numerator key, psum'med denominator key) of a loss function's sums
MetricSpec = dict[str, tuple[str, str]]


def global_metrics(sums: dict[str, jax.Array], spec: MetricSpec) -> dict:
    """psum every batch sum over devices, then divide into the global means named by ``spec``."""
    totals = {k: jax.lax.psum(v, AXIS) for k, v in sums.items() if not k.startswith("example_")}
    out = {name: losses.div_no_nan(totals[num], totals[den]) for name, (num, den) in spec.items()}
    counts = {den for _, den in spec.values()}
    return out | {k: totals[k] for k in counts}


def dropout_rngs(rng: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
    """One dropout key per step and device, from the run's single key."""
    rng = jax.random.fold_in(jax.random.fold_in(rng, step), jax.lax.axis_index(AXIS))
    return {"dropout": rng}


def freeze(params, trainable: Callable[[str], bool]):
    """``params`` with the gradient stopped at every leaf ``trainable`` rejects (so XLA drops
    the backward pass below the lowest trainable layer)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, p: p if trainable(param_path(path)) else jax.lax.stop_gradient(p), params
    )


def make_train_step(
    loss_fn: LossFn, spec: MetricSpec, donate: bool = True, trainable: str | None = None,
) -> Callable:
    """Pmapped ``step(state, batch, rng) -> (new_state, metrics)`` minimising ``loss_fn``'s loss.

    ``trainable``: a regex over parameter paths (``trainable_predicate``); the others get no
    gradient (the optimiser also leaves them undecayed: ``state.bert_adamw(trainable=...)``).
    """
    is_trainable = trainable_predicate(trainable)

    def step(state: TrainState, batch: dict, rng: jax.Array):
        rngs = dropout_rngs(rng, state.step)

        def objective(params):
            return loss_fn(freeze(params, is_trainable), batch, rngs, deterministic=False)

        grads, sums = jax.grad(objective, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        return state.apply_gradients(grads), global_metrics(sums, spec)

    return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,) if donate else ())


def make_eval_step(loss_fn: LossFn, spec: MetricSpec) -> Callable:
    """Pmapped ``eval_step(params, batch) -> metrics`` (no dropout, no update)."""

    def step(params, batch):
        _, sums = loss_fn(params, batch, {}, deterministic=True)
        return global_metrics(sums, spec)

    return jax.pmap(step, axis_name=AXIS)
