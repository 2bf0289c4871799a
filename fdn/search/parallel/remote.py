"""The search across processes (hosts): `RemoteWorkers` on process 0, `serve` on every other process.

Every host runs the same ``python -m fdn.search --distributed ...``. Process 0 runs the loop of
`fdn.search.loop` unchanged (agent, log, checkpoints, report); its `Workers` is a `RemoteWorkers`: its own
local pool plus the pools of the other processes, reached through the coordination service's key-value store
(`fdn.distributed.mailbox`; no sockets of fdn's own, no device collectives). Every other process `serve`\\ s:
it builds the same set-up (after process 0, so a teacher or prepared data on shared storage is reused),
trains the jobs sent to it on its local devices and posts their outcomes; it ends when process 0 says done.

Keys (under the mailbox's ``fdn/``)::

    setup              process 0 finished its set-up        ready/<p>      process p's worker count
    job/<p>/<index>    a job for process p (JSON)           outcome/<i>    candidate i's outcome (JSON)
    error/<p>          why process p stopped                done           process 0 ends the run (why)

An outcome depends on its job alone (`fdn.search.parallel.workers.run_job`), so which process trains which
candidate never changes a result: a 2-process search logs what a 1-process search with the same
``parallel.lag`` logs. Jobs in flight when a process is lost are simply retrained after the resume, as after
any other stop (the checkpoint lists them).
"""

from __future__ import annotations

import collections
import signal
import time

from fdn.distributed.session import DONE, Session
from fdn.distributed.watchdog import ProcessLost
from fdn.errors import UserError
from fdn.interrupts import StopSignals, exit_code_of
from fdn.search.parallel.local import LocalWorkers
from fdn.search.parallel.workers import Job, Outcome

POLL_S = 0.05  # how long one wait for a local outcome lasts before the mailbox is read again


def local_outcome(pool: LocalWorkers) -> Outcome | None:
    """The pool's next outcome within `POLL_S`; a pool with nothing outstanding answers None at once, so the
    rest of the interval is slept (the caller polls the mailbox in between, not in a busy loop)."""
    start = time.monotonic()
    outcome = pool.next_outcome(timeout_s=POLL_S)
    if outcome is None:
        time.sleep(max(0.0, POLL_S - (time.monotonic() - start)))
    return outcome


class RemoteProcessError(UserError, RuntimeError):
    """Another process of the run stopped with an error (its message is part of this one)."""


def across_processes(workers, setup, config, session: Session | None, log=print):
    """The loop's workers for this run: ``workers`` itself in a single-process run, else a `RemoteWorkers`
    over this host's trainers and the other processes (and process 0 tells them its set-up is done)."""
    if session is None or session.num_processes == 1:
        return workers
    workers.close()  # InlineWorkers trains in the calling thread; the loop's thread must keep reading the mailbox
    names = [f"process0/{d or 'default'}" for d in setup.devices]
    remote = RemoteWorkers(LocalWorkers(setup.trainers, config, names), session)
    session.mailbox.set("setup", "1", overwrite=True)
    log(f"search: process 0 of {session.num_processes}: {remote.local.capacity} local worker(s); others join")
    return remote


class RemoteWorkers:
    """`Workers` over this process's pool (first) and every other process's pool, which joins when ready."""

    def __init__(self, local: LocalWorkers, session: Session):
        self.local, self.session, self.mailbox = local, session, session.mailbox
        self.others = [p for p in range(session.num_processes) if p != session.process_id]
        self.sizes: dict[int, int] = {}  # process -> worker count, once it posted ready/<p>
        self.busy = collections.Counter()  # process (0 = local) -> jobs handed to it and not yet back
        self.assigned: dict[int, int] = {}  # candidate index -> process
        self.waiting: collections.deque = collections.deque()  # submitted jobs no worker has taken yet
        self.finished: collections.deque = collections.deque()  # outcomes read but not yet handed out

    @property
    def capacity(self) -> int:
        return self.local.capacity + sum(self.sizes.values())

    def submit(self, job: Job) -> None:
        self.waiting.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        for p in self.others:
            if p not in self.sizes and (size := self.mailbox.try_get(f"ready/{p}")) is not None:
                self.sizes[p] = int(size)
        while self.waiting:
            free = [p for p in [self.session.process_id, *self.sizes] if self.busy[p] < self._size(p)]
            if not free:
                return
            p, job = free[0], self.waiting.popleft()
            if p == self.session.process_id:
                self.local.submit(job)
            else:
                self.mailbox.set(f"job/{p}/{job.index}", job.to_json())
            self.busy[p] += 1
            self.assigned[job.index] = p

    def _size(self, p: int) -> int:
        return self.local.capacity if p == self.session.process_id else self.sizes[p]

    def _collect(self) -> None:
        errors = self.mailbox.dir_get("error")
        if errors:
            key, message = sorted(errors.items())[0]
            raise RemoteProcessError(
                f"process {key.rsplit('/', 1)[1]} stopped: {message}; the search stopped too (every committed "
                "candidate is saved): run the same command on every host to resume"
            )
        for key, value in sorted(self.mailbox.dir_get("outcome").items()):
            self.mailbox.delete(key)
            self._returned(Outcome.from_json(value))

    def _returned(self, outcome: Outcome) -> None:
        self.busy[self.assigned.pop(outcome.index, self.session.process_id)] -= 1
        self.finished.append(outcome)

    def next_outcome(self, timeout_s: float | None = None) -> Outcome | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.finished:
            self.session.watchdog.check()
            self._collect()
            if (mine := local_outcome(self.local)) is not None:
                self._returned(mine)
            self._dispatch()
            if deadline is not None and time.monotonic() > deadline:
                return None
        self._dispatch()
        return self.finished.popleft()

    def close(self) -> None:
        """Stops the local pool and tells the other processes the run is over (they exit on their own)."""
        self.local.close()
        if self.mailbox.try_get(DONE) is None:
            self.mailbox.set(DONE, "finished")


def serve(config, workdir, trainer_factory, session: Session, log=print) -> int:
    """A process k > 0 of a search: trains the jobs process 0 sends it until process 0 says done.

    Returns 0, or 130 / 143 after SIGINT / SIGTERM (then process 0 learns why from ``error/<k>`` and stops
    too: a Slurm time limit signals every task). Any other error is posted the same way and raised.
    """
    pid = session.process_id
    try:
        with StopSignals():
            return _serve(config, workdir, trainer_factory, session, log)
    except KeyboardInterrupt as err:
        session.mailbox.set(f"error/{pid}", f"interrupted ({signal.Signals(exit_code_of(err) - 128).name})", True)
        log(f"search: process {pid}: interrupted; run the same command on every host to resume")
        return exit_code_of(err)
    except ProcessLost:
        raise
    except Exception as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        session.mailbox.set(f"error/{pid}", message, True)
        raise


def _serve(config, workdir, trainer_factory, session: Session, log) -> int:
    from fdn.search import setup as setup_lib
    from fdn.search.parallel.devices import worker_devices

    mailbox, dog, pid = session.mailbox, session.watchdog, session.process_id
    while mailbox.try_get("setup") is None:  # data and teacher first written by process 0 (shared storage)
        dog.check()
        if mailbox.try_get(DONE) is not None:
            return 0
        time.sleep(POLL_S * 4)
    setup = setup_lib.build(config, workdir, trainer_factory=trainer_factory, devices=worker_devices(config), log=log)
    pool = LocalWorkers(setup.trainers, config, [f"process{pid}/{d or 'default'}" for d in setup.devices])
    mailbox.set(f"ready/{pid}", str(pool.capacity))
    log(f"search: process {pid} of {session.num_processes}: {pool.capacity} worker(s) ready")
    trained = 0
    try:
        while (reason := mailbox.try_get(DONE)) is None:
            dog.check()
            jobs = sorted(mailbox.dir_get(f"job/{pid}").items(), key=lambda kv: int(kv[0].rsplit("/", 1)[1]))
            for key, value in jobs:
                mailbox.delete(key)
                pool.submit(Job.from_json(value))
            if (outcome := local_outcome(pool)) is not None:
                mailbox.set(f"outcome/{outcome.index}", outcome.to_json())
                trained += 1
    finally:
        pool.close()
        setup.close()
    log(f"search: process {pid}: {trained} candidates trained here; process 0 ended the run ({reason})")
    return 0
