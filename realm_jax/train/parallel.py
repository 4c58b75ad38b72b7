"""Moving pytrees between the host and the data-parallel (pmap, axis ``"batch"``) layout, and
the one barrier multi-host code needs."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def _leading_axis_sharding(devices) -> NamedSharding:
    return NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))


def replicate(tree, devices=None):
    """One copy of every leaf per local device: leaves get a leading ``[num_devices]`` axis."""
    devices = list(devices or jax.local_devices())
    sharding = _leading_axis_sharding(devices)
    put = lambda x: jax.device_put(
        np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))), sharding
    )
    return jax.tree.map(put, tree)


def unreplicate(tree):
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def shard(tree, num_devices: int | None = None):
    """Splits the leading (global batch) axis into ``[num_devices, per_device, ...]``."""
    n = num_devices or jax.local_device_count()

    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"global batch {x.shape[0]} is not divisible by {n} devices")
        return x.reshape(n, x.shape[0] // n, *x.shape[1:])

    return jax.tree.map(split, tree)


def unshard(tree):
    """Inverse of :func:`shard`: ``[num_devices, per_device, ...]`` -> one batch axis."""
    return jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), tree)


def sync(name: str, processes: int | None = None) -> None:
    """A barrier across the processes of a ``jax.distributed`` job (nothing on one host).

    ``processes``: how many take part in the work at hand (default: the job's); 1 means this
    process works alone, e.g. a refresher thread in one trainer process, and does not wait."""
    if (jax.process_count() if processes is None else processes) > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
