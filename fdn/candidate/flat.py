"""Parameters as one flat vector for the optimiser and Polyak averaging.

Why flat: a candidate's decoder has ~250 parameter arrays. Per-leaf optimiser code (clip, L2, Adam moments,
bias correction, Polyak) is ~30 HLO ops per leaf, i.e. most of the train step's program: measured on XLA:CPU,
24k lines of HLO and a 17 s compile for a stage-1 step, of which the model itself is the smaller part. On one
vector the same updates are a handful of fused element-wise loops, whatever the genotype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


class Flattener:
    """Maps a pytree of arrays with fixed shapes to one float32 vector and back (order = tree leaves); a
    float64 tree (``jax_enable_x64``, the float64 parity test) gets a float64 vector."""

    def __init__(self, abstract_tree):
        leaves, self.treedef = jax.tree.flatten(abstract_tree)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.sizes = [int(math.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.size = int(self.offsets[-1])
        self.dtype = jnp.result_type(jnp.float32, *(x.dtype for x in leaves))

    def flatten(self, tree):
        leaves = jax.tree.leaves(tree)
        return jnp.concatenate([jnp.ravel(x).astype(self.dtype) for x in leaves])

    def unflatten(self, vec):
        bounds = zip(self.offsets[:-1], self.offsets[1:], self.shapes)
        leaves = [vec[int(a) : int(b)].reshape(s) for a, b, s in bounds]
        return jax.tree.unflatten(self.treedef, leaves)

    def mask(self, labels_tree, label) -> np.ndarray:
        """A float32 vector, 1 where the leaf's label is ``label`` (``labels_tree`` mirrors the params)."""
        out = np.zeros(self.size, np.float32)
        for a, b, lab in zip(self.offsets[:-1], self.offsets[1:], jax.tree.leaves(labels_tree)):
            out[a:b] = float(lab == label)
        return out
