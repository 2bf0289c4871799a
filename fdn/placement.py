"""Host arrays onto the device (and device arrays copied) without compiling anything.

Why: in JAX 0.10 ``jnp.asarray`` / ``jnp.array`` of a NumPy array stage it through a small jitted program, compiled
anew for every shape and dtype it meets (``jit(stage)``; ``jnp.array(x, copy=True)`` of a device array likewise
compiles a ``jit(copy)``). Each costs ~10 ms alone, ~100 ms while another thread traces a program (the GIL): a cold
demo search met ~40 of them between its teacher and its first scored candidate, ~2 s of it on the main thread while
the background compile traced the stage-2 program. ``jax.device_put`` moves the same bytes with no program, and a
cast made on the host gives the same values as the device's (IEEE rounding either way).
"""

from __future__ import annotations

import jax
import numpy as np


def put(x, dtype=None):
    """``x`` (NumPy, a Python scalar or list, or already a JAX array) as a JAX array of ``dtype`` on the default
    device, uncommitted, as ``jnp.asarray(x, dtype)`` gives it."""
    if isinstance(x, jax.Array):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype))


def put_tree(tree):
    """``put`` on every leaf of ``tree``."""
    return jax.tree.map(put, tree)


def copy(x):
    """A fresh buffer with ``x``'s values, placed as ``x`` is (e.g. before a step that donates its inputs)."""
    return jax.device_put(x, may_alias=False)
