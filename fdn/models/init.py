"""fdn's initialisation (PyTorch's defaults), drawn with NumPy from a model's abstract variables.

Why not ``model.init``: on XLA:CPU, initialising a whole segmenter costs tens of seconds eagerly (every op is
compiled on its own) and minutes jitted (one huge RNG program), once per genotype; NumPy draws the same
distributions from the shapes alone in milliseconds. Kernels and conv biases are U(-1/sqrt(fan_in),
1/sqrt(fan_in)); BN scale 1, bias 0, running mean 0, running var 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from fdn.models import names as N


def draw_variables(abstract, seed, random_bn_stats: bool = False) -> dict:
    """Concrete variables for an abstract tree (``{'params', 'batch_stats'}`` of ShapeDtypeStructs).

    ``seed``: anything ``np.random.default_rng`` takes (an int, or a list of ints such as a JAX key's words).

    ``random_bn_stats`` also draws BN scales, shifts and running statistics (scale U(0.5, 1.5), shift N(0, 0.1),
    mean N(0, 0.2), var U(0.5, 2), as the parity fixtures), so tests exercise BN folding with non-trivial numbers.
    """
    rng = np.random.default_rng(seed)
    flat = traverse_util.flatten_dict(dict(abstract))
    out = {}
    for path in sorted(flat):
        shape, dtype, leaf = tuple(flat[path].shape), flat[path].dtype, path[-1]
        kernel = path[:-1] + (N.KERNEL,)
        if leaf == N.KERNEL:
            bound = 1 / np.sqrt(shape[0] * shape[1] * shape[2])
        elif leaf == N.BIAS and kernel in flat:  # a conv's own bias
            k = flat[kernel].shape
            bound = 1 / np.sqrt(k[0] * k[1] * k[2])
        else:
            bound = None
        if bound is not None:
            value = rng.uniform(-bound, bound, shape)
        elif leaf not in (N.SCALE, N.BIAS, N.MEAN, N.VAR):
            raise ValueError(f"draw_variables: no rule for {'/'.join(path)}")
        elif random_bn_stats:
            draw = {
                N.SCALE: lambda: rng.uniform(0.5, 1.5, shape),
                N.BIAS: lambda: rng.normal(0, 0.1, shape),
                N.MEAN: lambda: rng.normal(0, 0.2, shape),
                N.VAR: lambda: rng.uniform(0.5, 2.0, shape),
            }
            value = draw[leaf]()
        else:
            value = np.ones(shape) if leaf in (N.SCALE, N.VAR) else np.zeros(shape)
        out[path] = np.asarray(value, dtype)
    return traverse_util.unflatten_dict(out)


def random_variables(spec, seed: int = 0, random_bn_stats: bool = False) -> dict:
    """Variables of the model ``spec`` (a ``fdn.models.segmenter.ModelSpec``) in fdn's initialisation."""
    from fdn.models.segmenter import abstract_variables

    return draw_variables(abstract_variables(spec, (32, 32)), seed, random_bn_stats)


def random_encoder_variables(expand_first_block: bool, key) -> dict:
    """A freshly initialised MobileNet-v2 encoder ({'params', 'batch_stats'}), seeded by a JAX ``key``.

    The search's random encoder (the demo has no pretrained one): ``draw_variables`` with NumPy seeded by the
    key's raw words, so a search seed keeps drawing the numbers it always drew.
    """
    from fdn.models.encoder import MobileNetV2Encoder

    model = MobileNetV2Encoder(expand_first_block)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), False))
    return draw_variables(shapes, np.asarray(jax.random.key_data(key)).tolist())
