"""Which devices the search's workers train on: ``parallel.workers`` resolved against this host's devices."""

from __future__ import annotations

import jax

from fdn.errors import UserError


class WorkersError(UserError, ValueError):
    """``parallel.workers`` asks for more devices than this host has."""


def worker_count(config) -> int:
    """``parallel.workers``, with 0 meaning every local accelerator device (1 on CPU)."""
    devices = jax.local_devices()
    n = int(config.parallel.workers)
    if n == 0:
        return 1 if devices[0].platform == "cpu" else len(devices)
    if n < 0 or n > len(devices):
        raise WorkersError(
            f"parallel.workers={n}, but this host has {len(devices)} {devices[0].platform} device(s); use 0 (every "
            "device) or fewer (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N devices)"
        )
    return n


def worker_devices(config) -> list:
    """One device per worker; ``[None]`` (the default device, nothing committed) for a single worker."""
    n = worker_count(config)
    return [None] if n == 1 else list(jax.local_devices()[:n])
