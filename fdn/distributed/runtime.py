"""Starting ``jax.distributed`` for ``fdn.train`` and ``fdn.search``: from flags, or from the environment.

Every host runs the same command. With ``--distributed`` and nothing else, JAX detects the coordinator, the
process count and this process's index (Slurm, Open MPI, Cloud TPU VM metadata, Kubernetes); the
``--coordinator_address`` / ``--num_processes`` / ``--process_id`` / ``--local_device_ids`` flags say them
explicitly (``JAX_COORDINATOR_ADDRESS`` / ``JAX_LOCAL_DEVICE_IDS`` are read too). It must run before anything
touches a device, so the commands call `initialize` first thing in ``main``.

Heartbeats: fdn's own watchdog (`fdn.distributed.watchdog`) declares a process lost after
``heartbeat_timeout_s`` and stops the run with one line naming it. JAX's runtime has its own heartbeat, which
kills every survivor with a C++ fatal log (no Python, no message of ours); `jax_heartbeat_s` sets it later
than ours, so the user reads fdn's line first. When process 0 itself dies, JAX stops the others at once with
its own line ("... the leader task was preempted/died ..."): process 0 hosts the service, nothing can outrun it.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from fdn.errors import UserError


class DistributedError(UserError, RuntimeError):
    """``jax.distributed`` could not start (bad flags, coordinator unreachable, timeout, backend already used)."""


@dataclasses.dataclass(frozen=True)
class Options:
    """What `initialize` needs; None = let JAX detect it from the environment."""

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    heartbeat_timeout_s: int = 60
    init_timeout_s: int = 300


def jax_heartbeat_s(heartbeat_timeout_s: int) -> int:
    """JAX's own heartbeat timeout: late enough that fdn's watchdog (``heartbeat_timeout_s``) speaks first and
    its process has time to exit, yet bounded, so a process fdn cannot reach still ends."""
    return 2 * int(heartbeat_timeout_s) + 10


def initialize(options: Options, command: str = "fdn") -> None:
    """``jax.distributed.initialize`` with ``options``; a failure Python sees is one `DistributedError` line."""
    import jax
    from jax._src import xla_bridge

    where = (
        f"coordinator {options.coordinator_address or 'detected'}, process "
        f"{'?' if options.process_id is None else options.process_id} of {options.num_processes or '?'}"
    )
    if options.heartbeat_timeout_s < 1:
        raise DistributedError(f"--heartbeat_timeout_s={options.heartbeat_timeout_s}: give at least 1 second")
    if xla_bridge.backends_are_initialized():
        raise DistributedError("jax.distributed must start before any device is used (a bug: fdn used one first)")
    # A connection that times out is a C++ fatal error (no exception to turn into a line): say beforehand.
    print(
        f"{command}: connecting to the distributed runtime ({where}, --init_timeout_s={options.init_timeout_s}); an "
        "abort with 'Deadline Exceeded' and 'RegisterTask' after this line means the processes could not meet: "
        "start every one, check the coordinator address and port, and firewalls",
        file=sys.stderr,
        flush=True,
    )
    try:
        jax.distributed.initialize(
            options.coordinator_address,
            options.num_processes,
            options.process_id,
            list(options.local_device_ids) if options.local_device_ids is not None else None,
            initialization_timeout=int(options.init_timeout_s),
            heartbeat_timeout_seconds=jax_heartbeat_s(options.heartbeat_timeout_s),
        )
    except Exception as err:  # noqa: BLE001  (ValueError, RuntimeError, JaxRuntimeError: all one line to the user)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"cannot start the distributed runtime ({where}): {first}; start the same command on every host "
            "(process 0 first or within --init_timeout_s), or give --coordinator_address=HOST:PORT "
            "--num_processes=N --process_id=K where no scheduler is detected"
        ) from err


def exit_now(line: str, code: int = 2) -> None:
    """Prints ``line`` to stderr and ends the process at once, without Python's or JAX's shutdown.

    For a lost process only: JAX's orderly shutdown waits at a barrier for every process, the lost one
    included, so an ordinary exit would hang until JAX's own heartbeat killed us without a word.
    """
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)
