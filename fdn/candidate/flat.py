"""Parameters as one flat vector for the optimiser and Polyak averaging, and a compile-free initialiser.

Why flat: a candidate's decoder has ~250 parameter arrays. Per-leaf optimiser code (clip, L2, Adam moments,
bias correction, Polyak) is ~30 HLO ops per leaf, i.e. most of the train step's program: measured on XLA:CPU,
24k lines of HLO and a 17 s compile for a stage-1 step, of which the model itself is the smaller part. On one
vector the same updates are a handful of fused element-wise loops, whatever the genotype.

Why a NumPy initialiser: ``jax.jit(decoder.init)`` is one more XLA compile per genotype (tens of seconds on a
loaded 2-core CPU) to produce numbers that need no device at all. ``numpy_init`` draws from the same
distributions as the Flax modules (``fdn.layers``: PyTorch's default conv init, BN scale 1 / bias 0, running
mean 0 / var 1) from the variables' abstract shapes, seeded, in milliseconds.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


class Flattener:
    """Maps a pytree of arrays with fixed shapes to one float32 vector and back (order = tree leaves)."""

    def __init__(self, abstract_tree):
        leaves, self.treedef = jax.tree.flatten(abstract_tree)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.sizes = [int(math.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.size = int(self.offsets[-1])

    def flatten(self, tree):
        leaves = jax.tree.leaves(tree)
        return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])

    def unflatten(self, vec):
        bounds = zip(self.offsets[:-1], self.offsets[1:], self.shapes)
        leaves = [vec[int(a):int(b)].reshape(s) for a, b, s in bounds]
        return jax.tree.unflatten(self.treedef, leaves)

    def mask(self, labels_tree, label) -> np.ndarray:
        """A float32 vector, 1 where the leaf's label is ``label`` (``labels_tree`` mirrors the params)."""
        out = np.zeros(self.size, np.float32)
        for a, b, lab in zip(self.offsets[:-1], self.offsets[1:], jax.tree.leaves(labels_tree)):
            out[a:b] = float(lab == label)
        return out


def numpy_init(abstract_variables, seed: int) -> dict:
    """Variables with Flax's init distributions for ``fdn.layers`` modules, drawn with NumPy from ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for collection, tree in abstract_variables.items():
        flat = traverse_util.flatten_dict(tree)
        values = {}
        for path, leaf in flat.items():
            shape, name = tuple(leaf.shape), path[-1]
            if collection == "batch_stats":
                values[path] = np.zeros(shape, np.float32) if name == "mean" else np.ones(shape, np.float32)
            elif name == "kernel":
                bound = 1.0 / math.sqrt(shape[0] * shape[1] * shape[2])
                values[path] = rng.uniform(-bound, bound, shape).astype(np.float32)
            elif name == "scale":
                values[path] = np.ones(shape, np.float32)
            elif name == "bias" and path[:-1] + ("kernel",) in flat:  # a conv bias
                k = flat[path[:-1] + ("kernel",)].shape
                bound = 1.0 / math.sqrt(k[0] * k[1] * k[2])
                values[path] = rng.uniform(-bound, bound, shape).astype(np.float32)
            elif name == "bias":
                values[path] = np.zeros(shape, np.float32)
            else:
                raise ValueError(f"numpy_init: no rule for {collection}/{'/'.join(path)}")
        out[collection] = traverse_util.unflatten_dict(values)
    return out
