"""fdn.placement: the same arrays as ``jnp.asarray`` / ``jnp.array(copy=True)``, without compiling a program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import placement

_compiles = []


def _on_duration(event, seconds, **kwargs):
    if event.endswith("backend_compile_duration"):
        _compiles.append(seconds)


jax.monitoring.register_event_duration_secs_listener(_on_duration)

# (host array, dtype asked for): the casts fdn makes (images and labels to the device)
CASES = [
    (np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3), np.float32),
    (np.linspace(-3, 3, 7 * 11, dtype=np.float64).reshape(7, 11), np.float32),
    (np.array([[0, 3, 255], [1, 2, 254]], np.int64), np.uint8),
    (np.array([[0, 3, 255], [1, 2, 254]], np.int64), np.int32),
    (np.arange(13, dtype=np.int64), None),
    (np.linspace(0, 1, 17, dtype=np.float32), None),
]


@pytest.mark.parametrize("host, dtype", CASES)
def test_put_equals_jnp_asarray_and_compiles_nothing(host, dtype):
    _compiles.clear()
    got = placement.put(host, dtype)
    jax.block_until_ready(got)
    assert not _compiles, f"put compiled {len(_compiles)} programs"
    want = jnp.asarray(host, dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert not got.committed and got.devices() == want.devices()
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_put_of_a_device_array_keeps_it_or_casts_it():
    x = jnp.arange(5.0)
    assert placement.put(x) is x
    assert placement.put(x, jnp.float32) is x
    np.testing.assert_array_equal(np.asarray(placement.put(x, jnp.int32)), np.arange(5))


def test_put_tree():
    tree = {"a": np.ones((2, 19), np.float32), "b": [np.zeros(23, np.int64)]}
    _compiles.clear()
    got = placement.put_tree(tree)
    assert not _compiles
    assert got["a"].dtype == jnp.float32 and got["b"][0].dtype == jnp.int32


@pytest.mark.parametrize("committed", [False, True])
def test_copy_is_a_fresh_buffer_placed_as_the_original(committed):
    x = jnp.arange(29.0) * 2
    if committed:
        x = jax.device_put(x, jax.devices()[0])
    _compiles.clear()
    y = placement.copy(x)
    assert not _compiles
    assert y.committed == committed and y.devices() == x.devices()
    assert y.unsafe_buffer_pointer() != x.unsafe_buffer_pointer()
    jax.jit(lambda v: v * 0, donate_argnums=0)(x)  # the original's buffer goes; the copy stays
    np.testing.assert_array_equal(np.asarray(y), np.arange(29.0) * 2)
