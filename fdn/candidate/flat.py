"""Parameters as one flat vector for the optimiser and Polyak averaging.

Why flat: a candidate's decoder has ~250 parameter arrays. Per-leaf optimiser code (clip, L2, Adam moments,
bias correction, Polyak) is ~30 HLO ops per leaf, i.e. most of the train step's program: measured on XLA:CPU,
24k lines of HLO and a 17 s compile for a stage-1 step, of which the model itself is the smaller part. On one
vector the same updates are a handful of fused element-wise loops, whatever the genotype.

Outside a trace (the trainer packing a candidate's start and unpacking its result) neither direction runs op by op:
there every leaf's slice, reshape and cast would compile a program of its own on first use (~150 small programs,
1.2 s of the first candidate on 2 cores, ~3 s while a cold search's background compile competes for the cores).
Packing is one compiled program per layout (~0.05 s to compile); unpacking slices a host copy of the vector and
puts the leaves back on its device, because a program with ~250 outputs costs as much to compile as the small ones
(measured 0.9 s for the demo's encoder) while the copy costs milliseconds.
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
        return _flatten(leaves, self.dtype) if _traced(leaves) else _flatten_compiled(leaves, self.dtype)

    def unflatten(self, vec):
        if _traced([vec]):
            return self._slices(vec)
        host = np.array(vec)  # a private copy: the leaves may alias it, never the (possibly donated) vector
        # Placed as the vector was: committed to its device or not (a jitted function compiles once per placement).
        return jax.device_put(self._slices(host), vec.sharding if getattr(vec, "committed", False) else None)

    def _slices(self, vec):
        """The leaves as slices of ``vec`` (a tracer, or a NumPy array: then views of it)."""
        bounds = zip(self.offsets[:-1], self.offsets[1:], self.shapes)
        return jax.tree.unflatten(self.treedef, [vec[int(a) : int(b)].reshape(s) for a, b, s in bounds])

    def mask(self, labels_tree, label) -> np.ndarray:
        """A float32 vector, 1 where the leaf's label is ``label`` (``labels_tree`` mirrors the params)."""
        out = np.zeros(self.size, np.float32)
        for a, b, lab in zip(self.offsets[:-1], self.offsets[1:], jax.tree.leaves(labels_tree)):
            out[a:b] = float(lab == label)
        return out


def _traced(leaves) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in leaves)


def _flatten(leaves, dtype):
    return jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])


# One program per leaf shapes and dtype, shared by every Flattener of that layout (the module docstring says why).
_flatten_compiled = jax.jit(_flatten, static_argnums=1)
