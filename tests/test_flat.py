"""fdn.candidate.flat: parameters as one vector, exact both ways, and no small programs compiled op by op outside a
trace (the module docstring says why that matters to the search's first candidate)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn.candidate.flat import Flattener

_compiles = []


def _on_duration(event, seconds, **kwargs):
    if event.endswith("backend_compile_duration"):
        _compiles.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def _tree(seed, shapes):
    rng = np.random.default_rng(seed)
    return {f"leaf{i:02d}": jnp.asarray(rng.normal(size=s).astype(np.float32)) for i, s in enumerate(shapes)}


# Shapes no other test uses: every eager op on them would compile afresh.
SHAPES = [(3, 5, 7, 11), (13,), (2, 17), (19, 3), (1, 1, 23), (29,), (7, 31), (37, 2)] * 4


def test_round_trip_is_exact_in_leaf_order():
    tree = _tree(0, SHAPES)
    f = Flattener(jax.eval_shape(lambda: tree))
    vec = f.flatten(tree)
    np.testing.assert_array_equal(np.asarray(vec), np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)]))
    back = f.unflatten(vec)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_traced_and_eager_agree():
    tree = _tree(1, SHAPES[:8])
    f = Flattener(jax.eval_shape(lambda: tree))
    vec = f.flatten(tree)
    traced = jax.jit(lambda v: f.flatten(jax.tree.map(lambda x: 2 * x, f.unflatten(v))))(vec)
    np.testing.assert_array_equal(np.asarray(traced), 2 * np.asarray(vec))


def test_unflatten_outside_a_trace_compiles_nothing_and_flatten_one_program():
    shapes = [(s[0] + 41,) + s[1:] for s in SHAPES]  # a layout new to this process
    tree = _tree(2, shapes)
    f = Flattener(jax.eval_shape(lambda: tree))
    _compiles.clear()
    vec = f.flatten(tree)
    assert len(_compiles) == 1, f"flatten compiled {len(_compiles)} programs"
    _compiles.clear()
    jax.block_until_ready(f.unflatten(vec))
    assert not _compiles, f"unflatten compiled {len(_compiles)} programs"


@pytest.mark.parametrize("committed", [False, True])
def test_leaves_are_placed_as_the_vector_was(committed):
    tree = _tree(3, SHAPES[:4])
    f = Flattener(jax.eval_shape(lambda: tree))
    vec = f.flatten(tree)
    if committed:
        vec = jax.device_put(vec, jax.devices()[0])
    assert vec.committed == committed
    for leaf in jax.tree.leaves(f.unflatten(vec)):
        assert leaf.committed == committed
        assert leaf.devices() == vec.devices()


def test_leaves_outlive_a_donated_vector():
    tree = _tree(4, SHAPES[:4])
    f = Flattener(jax.eval_shape(lambda: tree))
    vec = f.flatten(tree)
    back = f.unflatten(vec)
    overwrite = jax.jit(lambda v: v * 0 - 1, donate_argnums=0)
    jax.block_until_ready(overwrite(vec))
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
