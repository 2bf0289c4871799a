"""BN re-estimation of a random encoder: eval-mode outputs match train mode on the calibration batch."""

import jax
import jax.numpy as jnp
import numpy as np

from fdn.models.bn_calibration import calibrate_batch_stats
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import random_encoder_variables


def _apply_train(model):
    return lambda v, x: model.apply(v, x, True, mutable=["batch_stats"])[1]["batch_stats"]


def test_calibrated_eval_mode_equals_train_mode_on_the_same_images():
    model = MobileNetV2Encoder()
    variables = random_encoder_variables(True, jax.random.key(0))
    images = jax.random.normal(jax.random.key(1), (8, 128, 128, 3))
    raw = model.apply(variables, images, False)
    # The failure calibration fixes: a random encoder's deep outputs vanish in eval mode.
    assert float(jnp.std(raw[3])) < 1e-4
    calibrated = calibrate_batch_stats(_apply_train(model), variables, [{"image": images}], max_batches=1)
    evals = model.apply(calibrated, images, False)
    trains, _ = model.apply(variables, images, True, mutable=["batch_stats"])
    # The first level sees few BN layers: equal up to the unbiased running variance (n / (n - 1), n = 32768).
    np.testing.assert_allclose(
        np.asarray(evals[0]), np.asarray(trains[0]), rtol=1e-2, atol=1e-2 * float(jnp.std(trains[0]))
    )
    # Deeper, that factor compounds over dozens of layers with few pixels each (l4: 4x4x8): same features
    # up to a small distortion.
    for e, t in zip(evals, trains):
        assert np.corrcoef(np.ravel(e), np.ravel(t))[0, 1] > 0.99
    assert all(0.1 < float(jnp.std(e)) < 10 for e in evals)
    # Parameters are untouched.
    jax.tree.map(np.testing.assert_array_equal, calibrated["params"], variables["params"])


def test_statistics_are_averaged_over_batches_and_limited_to_max_batches():
    model = MobileNetV2Encoder()
    variables = random_encoder_variables(True, jax.random.key(0))
    a = {"image": jax.random.normal(jax.random.key(1), (4, 32, 32, 3))}
    b = {"image": 3.0 + jax.random.normal(jax.random.key(2), (4, 32, 32, 3))}
    only_a = calibrate_batch_stats(_apply_train(model), variables, [a, b], max_batches=1)
    both = calibrate_batch_stats(_apply_train(model), variables, [a, b], max_batches=2)
    only_b = calibrate_batch_stats(_apply_train(model), variables, [b], max_batches=1)
    mean = lambda v: v["batch_stats"]["layer1"]["bn"]["mean"]  # noqa: E731
    np.testing.assert_allclose(mean(both), (mean(only_a) + mean(only_b)) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean(only_a), mean(both))
