"""`Workers` on this host: `LocalWorkers`, one thread per local device, and `InlineWorkers` for one device.

Per-device programs, not one vmapped program: under ``vmap`` with a batched plan the universal decoder's
``lax.switch`` becomes a select over all branches (scale-out-notes.md 0.2). Each thread owns a trainer whose
inputs are committed to its device (`fdn.candidate.CandidateTrainer`'s ``device``), so the jitted programs
run there; the host threads only dispatch (stage 1 is one call), so the GIL is not the limit.

`InlineWorkers` trains the job in the thread that asks for the outcome: one device needs no thread, and the
search with one worker stays as fast as before, Ctrl-C included. With ``precompile_next`` it compiles the
next queued job's programs in a background thread meanwhile (the ``compile_ahead`` setting).
"""

from __future__ import annotations

import collections
import queue
import threading
import time

from fdn.search.parallel.workers import Job, Outcome, run_job

_STOP = object()


class WorkerCrash(RuntimeError):
    """A worker thread died outside `run_job`'s failure handling (a bug): the search stops with it."""


class LocalWorkers:
    """One thread per trainer, all taking jobs from one FIFO queue; outcomes come back as they finish."""

    def __init__(self, trainers, config, names=None):
        self.trainers = list(trainers)
        self.capacity = len(self.trainers)
        self.names = list(names or [f"worker{i}" for i in range(self.capacity)])
        self.config = config
        self._jobs: queue.Queue = queue.Queue()
        self._outcomes: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._outstanding = 0  # submitted jobs whose outcome was not handed back yet (the loop's thread only)
        self.busy_seconds = [0.0] * self.capacity  # for fdn.bench scale: each worker's time inside run_job
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"fdn-worker-{i}", daemon=True)
            for i in range(self.capacity)
        ]
        for t in self._threads:
            t.start()

    def _work(self, i: int) -> None:

        while True:
            job = self._jobs.get()
            if job is _STOP or self._closed.is_set():
                return
            start = time.perf_counter()
            try:
                outcome = run_job(self.trainers[i], job, self.config, worker=self.names[i])
            except BaseException as err:  # noqa: BLE001  (run_job records failures; this is a crash)
                self._outcomes.put(err)
                return
            finally:
                self.busy_seconds[i] += time.perf_counter() - start
            if not self._closed.is_set():
                self._outcomes.put(outcome)

    def submit(self, job: Job) -> None:
        self._outstanding += 1
        self._jobs.put(job)

    def next_outcome(self, timeout_s: float | None = None) -> Outcome | None:
        """The next outcome; None after ``timeout_s``, or at once when no job is outstanding (never hangs)."""
        if not self._outstanding:
            return None
        try:
            got = self._outcomes.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self._outstanding -= 1
        if isinstance(got, BaseException):
            raise WorkerCrash(f"a search worker crashed: {type(got).__name__}: {got}") from got
        return got

    def close(self) -> None:
        """Stops the threads after their current job. Waited for only when no job is outstanding (the threads
        are idle, so they end at once): an interrupted search exits now, and a finished one leaves no thread
        running into the interpreter's exit (a worker thread still inside XLA then aborts the process:
        "terminate called ... exception not rethrown", seen after ``fdn.bench scale``'s runs)."""
        self._closed.set()
        for _ in self._threads:
            self._jobs.put(_STOP)
        if not self._outstanding:
            for t in self._threads:
                t.join(timeout=10.0)


class InlineWorkers:
    """Capacity 1, no worker thread: `next_outcome` trains the oldest queued job in the calling thread."""

    capacity = 1

    def __init__(self, trainer, config, name: str = "worker0", precompile_next: bool = False):
        self.trainer, self.config, self.name = trainer, config, name
        self.precompile_next = precompile_next
        self._jobs: collections.deque = collections.deque()
        self._compiling = None
        self.busy_seconds = [0.0]

    def submit(self, job: Job) -> None:
        self._jobs.append(job)

    def next_outcome(self, timeout_s: float | None = None) -> Outcome | None:

        if not self._jobs:
            return None
        job = self._jobs.popleft()
        waited = self._wait_compile()  # the look-ahead compile of this job, if still running (joined, not repeated)
        if self.precompile_next and self._jobs:
            self._start_compile(self._jobs[0])
        start = time.perf_counter()
        try:
            outcome = run_job(self.trainer, job, self.config, worker=self.name)
        finally:
            self.busy_seconds[0] += time.perf_counter() - start
        # time spent waiting for this job's own programs is its compile time: the log's seconds and compile share
        # must not hide a compile that outlasted the candidate before (the demo: ~30 s compiles, ~3 s candidates)
        seconds = outcome.fields["seconds"]
        seconds["compile"] += waited
        seconds["worker_total"] += waited
        return outcome

    def _start_compile(self, job: Job) -> None:
        from fdn import genotype as gt

        genotype = gt.Genotype.from_actions(list(job.actions))

        def work():
            try:
                self.trainer.precompile(genotype)
            except Exception:  # noqa: BLE001  (the candidate itself meets and records any error)
                pass

        self._compiling = threading.Thread(target=work, name="fdn-compile-ahead", daemon=True)
        self._compiling.start()

    def _wait_compile(self) -> float:
        """Joins the look-ahead compile; the seconds waited."""
        if self._compiling is None:
            return 0.0
        start = time.perf_counter()
        self._compiling.join()
        self._compiling = None
        return time.perf_counter() - start

    def close(self) -> None:
        self._wait_compile()
        self._jobs.clear()
