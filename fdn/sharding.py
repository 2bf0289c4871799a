"""Data parallelism with ``jax.sharding``: one mesh axis ``data`` over every device of every host.

Parameters and optimiser state are replicated (``P()``), batches are split along their first axis
(``P('data')``); ``jax.jit`` then inserts the gradient all-reduce, and BatchNorm statistics are computed over
the global batch (sync-BN), so a sharded step computes what a one-device step on the same global batch
computes. Each host feeds only its own slice of the batch (``make_array_from_process_local_data``).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicate(tree, mesh: Mesh):
    """Host values (identical on every host) -> replicated global arrays."""
    sharding = replicated(mesh)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """This host's slice of a batch (dict of arrays) -> global arrays split along the batch axis."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def check_batch(batch_size: int, mesh: Mesh, what: str) -> None:
    """A configured global batch must fill every device equally (and hold at least one image: zero or less
    failed later, inside grain, with a traceback)."""
    from fdn.errors import InputError

    if batch_size < 1:
        raise InputError(f"{what}={batch_size}: a batch needs at least one image; fix the config value")
    if batch_size % mesh.size:
        raise InputError(f"{what} {batch_size} is not divisible by the {mesh.size} devices")
