"""The train state and BERT's optimiser recipe (AdamW, warmup then linear decay, clipping)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


def bert_warmup_steps(num_train_steps: int) -> int:
    """ORQA / REALM: ``min(10000, max(100, num_train_steps / 10))``."""
    return min(10000, max(100, int(num_train_steps / 10)))


def bert_learning_rate(
    learning_rate: float, num_train_steps: int, num_warmup_steps: int
) -> optax.Schedule:
    """BERT's schedule: lr * step / warmup while warming up, else lr * (1 - step / total)."""

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        decayed = learning_rate * jnp.maximum(0.0, 1.0 - step / num_train_steps)
        warmup = learning_rate * step / max(num_warmup_steps, 1)
        return jnp.where(step < num_warmup_steps, warmup, decayed)

    return schedule


def param_path(path) -> str:
    """A flattened pytree path as ``"params/encoder/bert/layer_5/..."``."""
    return "/".join(str(getattr(k, "key", k)) for k in path)


def trainable_predicate(pattern: str | None) -> Callable[[str], bool]:
    """Which parameters train: those whose ``param_path`` the regex ``pattern`` matches
    anywhere (``re.search``); empty or None: all of them."""
    if not pattern:
        return lambda path: True
    compiled = re.compile(pattern)
    return lambda path: compiled.search(path) is not None


def weight_decay_mask(params: Any, trainable: Callable[[str], bool] | None = None) -> Any:
    """BERT skips weight decay on biases and LayerNorm parameters (flax names them bias / scale);
    frozen parameters (``trainable(path)`` False) are not decayed either, so they stay put."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    decay = [
        getattr(path[-1], "key", None) not in ("bias", "scale")
        and (trainable is None or trainable(param_path(path)))
        for path, _ in flat
    ]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), decay)


def bert_adamw(
    learning_rate: float,
    num_train_steps: int,
    num_warmup_steps: int | None = None,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    trainable: Callable[[str], bool] | None = None,
    lr_scale: Callable[[str], float] | None = None,
) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (b1 0.9, b2 0.999, eps 1e-6) on BERT's schedule.

    Frozen parameters get zero gradients (``steps.freeze``): Adam's update of a zero gradient
    is exactly zero, and ``trainable`` keeps weight decay off them, so they do not move. The
    optimiser state has the same structure either way (a checkpoint restores into any).
    ``lr_scale(path)``: a factor on the step of each parameter (its learning rate times it).
    """
    if num_warmup_steps is None:
        num_warmup_steps = bert_warmup_steps(num_train_steps)
    scaled = [] if lr_scale is None else [scale_by_path(lr_scale)]
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(
            bert_learning_rate(learning_rate, num_train_steps, num_warmup_steps),
            b1=0.9,
            b2=0.999,
            eps=1e-6,
            weight_decay=weight_decay,
            mask=lambda params: weight_decay_mask(params, trainable),
        ),
        *scaled,
    )


def scale_by_path(factor: Callable[[str], float]) -> optax.GradientTransformation:
    """Multiplies each parameter's update by ``factor(param_path)`` (stateless)."""

    def update(updates, state, params=None):
        del params
        scale = lambda path, u: u if (f := factor(param_path(path))) == 1.0 else u * f
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def lr_scale_predicate(pattern: str | None, factor: float) -> Callable[[str], float] | None:
    """``factor`` for the parameter paths the regex ``pattern`` matches, 1 elsewhere (None: no
    pattern or factor 1)."""
    if not pattern or factor == 1.0:
        return None
    compiled = re.compile(pattern)
    return lambda path: factor if compiled.search(path) else 1.0


class TrainState(flax.struct.PyTreeNode):
    """Step count, parameters and optimiser state; ``tx`` is static (not a pytree leaf)."""

    step: jax.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> TrainState:
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx)

    def apply_gradients(self, grads: Any) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state)
