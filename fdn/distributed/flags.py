"""The multi-host flags shared by ``fdn.train`` and ``fdn.search`` (importing this module defines them)."""

from __future__ import annotations

from absl import flags

from fdn.distributed.runtime import DistributedError, Options

flags.DEFINE_bool(
    "distributed", False, "start jax.distributed first (multi-host: Slurm, Cloud TPU pods, ...; see launch/)"
)
flags.DEFINE_string("coordinator_address", None, "with --distributed: HOST:PORT of process 0 (default: detected)")
flags.DEFINE_integer("num_processes", None, "with --distributed: number of processes (default: detected)")
flags.DEFINE_integer("process_id", None, "with --distributed: this process's index (default: detected)")
flags.DEFINE_list("local_device_ids", None, "with --distributed: this process's GPUs, e.g. 0,1,2,3 (default: detected)")
flags.DEFINE_integer(
    "heartbeat_timeout_s",
    60,
    "with --distributed: a process silent this long is lost (the search stops with one line naming it); JAX's "
    "own heartbeat, which ends every process of a training run too, is set to twice this plus 10 s",
)
flags.DEFINE_integer("init_timeout_s", 300, "with --distributed: how long to wait for every process to connect")

_EXPLICIT = ("coordinator_address", "num_processes", "process_id", "local_device_ids")


def options(values=flags.FLAGS) -> Options | None:
    """The `Options` the flags ask for, or None without ``--distributed`` (explicit settings alone are an error)."""
    if not values.distributed:
        given = [f"--{name}" for name in _EXPLICIT if values[name].present]
        if given:
            raise DistributedError(f"{', '.join(given)} without --distributed: add --distributed (multi-host runs)")
        return None
    ids = values.local_device_ids
    try:
        local = tuple(int(i) for i in ids) if ids is not None else None
    except ValueError as err:
        raise DistributedError(f"--local_device_ids={','.join(ids)}: give device numbers, e.g. 0,1,2,3") from err
    return Options(
        coordinator_address=values.coordinator_address,
        num_processes=values.num_processes,
        process_id=values.process_id,
        local_device_ids=local,
        heartbeat_timeout_s=values.heartbeat_timeout_s,
        init_timeout_s=values.init_timeout_s,
    )
