"""The search loop: propose -> stage 1 -> early stop -> stage 2 -> reward -> agent update -> log -> checkpoint.

With ``parallel.lag`` L = 0 (the default) it is the paper's loop, one candidate at a time (paper.md 3)::

    genotype = agent.propose()                      # the controller samples
    r1 = trainer.stage1(genotype)                   # decoder only, on the cached encoder outputs
    if early_stop.step(r1) says continue:           # the official TaskPerformer rule, seeded
        r = trainer.stage2(genotype, r1)            # end to end
    agent.update(genotype, r)                       # failures count with reward 0
    candidates.jsonl += one line; checkpoint        # in that order (see fdn.search.run_log)

With L > 0, candidates ``i+1..i+L`` are proposed before candidate ``i`` is committed and train meanwhile on
the other workers (`fdn.search.parallel`: one per local device, ``parallel.workers``); commits stay in index
order (`fdn.search.proposals` has the order of agent calls). Every candidate's randomness (init, stage-2
batches, early-stop draw) is keyed by its index, so the log depends on (seed, L) only: one worker with L = 3
writes the same candidates as four.

Resuming: ``--workdir`` of an existing run restores the agent, the early-stop state and the proposals not yet
committed from the latest checkpoint and cuts ``candidates.jsonl`` back to the length recorded with it, so a
killed run (SIGKILL included) loses at most the candidates in flight, and a resumed run trains exactly what an
uninterrupted one would (on CPU). A resume with other result-deciding settings, a log shorter than its
checkpoint or a damaged checkpoint stop at once with one line (`fdn.errors.UserError`), before anything is
written.

Stopping: Ctrl-C and SIGTERM (`fdn.interrupts.StopSignals`) drop the candidates in flight; a signal during the
log/checkpoint write waits for it to finish, so the last checkpoint is complete; the summary says which
signal. ``failures.max_consecutive`` candidates failing in a row with one reason stop the search with one line
(`fdn.search.failure_streak`), their lines and checkpoint kept.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from fdn import genotype as gt
from fdn.agents import make_agent
from fdn.candidate import CandidateTrainer, TrainerFactory, enable_compilation_cache
from fdn.distributed import session as dist_session
from fdn.interrupts import StopSignals, exit_code_of
from fdn.search import budget, early_stop, progress, proposals, run_log
from fdn.search import setup as setup_lib
from fdn.search.candidate_run import run_candidate  # noqa: F401  (importable from here: failure-injection tests)
from fdn.search.failure_streak import FailureStreak
from fdn.search.parallel import remote
from fdn.search.parallel.devices import worker_devices
from fdn.search.parallel.local import InlineWorkers, LocalWorkers
from fdn.search.parallel.workers import Outcome
from fdn.search.proposals import Proposal
from fdn.search.settings import RUNTIME_KEYS, fingerprint, result_settings  # noqa: F401  (RUNTIME_KEYS: public)
from fdn.search.state import SearchCheckpointer, SearchState


def run(
    config,
    workdir,
    *,
    trainer_factory: TrainerFactory = CandidateTrainer,
    refresh_report: Callable | None = None,
    progress: bool | None = None,
    log=print,
) -> dict:
    """Runs (or resumes) the search in ``workdir`` up to ``config.num_candidates``; returns a summary.

    ``trainer_factory`` builds what trains the candidates (`fdn.candidate.protocol`); the search tests pass
    ``tests.fake_candidate.CandidateTrainer``. The summary's ``exit_code`` is 0, or 130/143 when SIGINT/SIGTERM
    stopped it (``signal`` names it). Raises `fdn.errors.UserError` subclasses for a workdir that cannot be
    resumed and for a run of failures (`fdn.search.failure_streak.TooManyFailures`).
    """
    wall_start = time.time()
    search = _Search(config, Path(workdir).absolute(), trainer_factory, refresh_report, log)
    stopped = None
    try:
        with StopSignals() as stops:
            search.set_up()
            search.loop(stops, progress)
    except KeyboardInterrupt as err:  # SIGINT or SIGTERM (fdn.interrupts.Interrupted)
        stopped = err
        log(
            f"\nsearch: interrupted ({_signal_name(err)}); {search.state.counter} candidates are saved in "
            f"{search.workdir} (run again to resume)"
        )
    finally:
        search.close()
    if not stopped:
        search.refresh()
    return {
        "candidates": search.state.counter,
        "best_reward": search.state.best_reward,
        "interrupted": stopped is not None,
        "signal": _signal_name(stopped) if stopped else None,
        "exit_code": exit_code_of(stopped) if stopped else 0,
        "setup_seconds": search.setup.seconds if search.setup else {},
        "wall_seconds": time.time() - wall_start,
    }


def _warm_up(agent, agent_state) -> None:
    """``agent.warm_up`` in a thread; a failure there is left for the real update to report."""
    try:
        agent.warm_up(agent_state)
    except Exception:  # noqa: BLE001, S110
        pass


def _signal_name(err: KeyboardInterrupt) -> str:
    return signal.Signals(getattr(err, "signum", signal.SIGINT)).name


class _Search:
    """One session of a search: its restored state, set-up, workers, log and checkpointer, and the loop's steps."""

    def __init__(self, config, workdir: Path, trainer_factory, refresh_report, log):
        self.config, self.workdir, self.log = config, workdir, log
        self.trainer_factory, self.refresh_report = trainer_factory, refresh_report
        self.setup = self.logfile = self.bar = self.workers = None
        self.lag = proposals.effective_lag(config)
        self.devices = worker_devices(config)  # a bad parallel.workers fails before anything is written,
        setup_lib.check_settings(config, len(self.devices))  # and so does any setting the search cannot run with
        workdir.mkdir(parents=True, exist_ok=True)
        if config.candidate.compilation_cache_dir:  # before the set-up: the encoder and teacher compile there too
            enable_compilation_cache(config.candidate.compilation_cache_dir)
        setup_lib.resolve_programs(config, self.devices[0], log)  # before the settings are recorded
        self.agent = make_agent(config.agent, config.agent_config)
        self.checkpointer = SearchCheckpointer(workdir, result_settings(config))
        try:
            self.state, self.streak = self._restore()
        except BaseException:
            self.checkpointer.close()
            raise
        # Only now: a refused resume must leave the workdir's config.json (the first session's) as it was.
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
        self.elapsed0 = self.state.elapsed
        self.session_start = time.time()

    def _restore(self) -> tuple[SearchState, FailureStreak]:
        """The latest checkpoint (or a fresh state), with the log cut back to it; user errors before any write."""
        config = self.config
        agent_key, loop_key = jax.random.split(jax.random.key(config.seed))
        fresh = SearchState(
            agent=self.agent.init(agent_key),
            rng=np.asarray(jax.random.key_data(loop_key)),
            early_stop=early_stop.init(config.seed, config.early_stop.maxval, config.early_stop.delta),
        )
        state = self.checkpointer.restore(fresh)
        if state is None:
            state = fresh
            first, state.agent = proposals.initial(self.agent, fresh.agent, self.lag, fresh.rng, fresh.early_stop)
            state.pending = [p.to_dict() for p in first]
        dropped = run_log.truncate_to(self.workdir, state.log_size)
        if state.counter:
            self.log(
                f"search: resuming {self.workdir} after candidate {state.counter - 1}"
                f"{f' (dropped {dropped} bytes of unfinished candidates)' if dropped else ''}"
            )
        return state, FailureStreak.from_records(run_log.read(self.workdir) if state.counter else [])

    def set_up(self) -> None:
        config = self.config
        budget.check(config.reward)  # a bad reward.* setting stops before minutes of set-up
        warm = threading.Thread(target=_warm_up, args=(self.agent, self.state.agent), name="fdn-agent-warm-up")
        warm.start()  # the agent's update compiles beside the set-up, not after the first candidate
        try:
            self.setup = setup_lib.build(
                config, self.workdir, trainer_factory=self.trainer_factory, devices=self.devices, log=self.log
            )
        finally:
            warm.join()
        if len(self.setup.trainers) == 1:
            self.workers = InlineWorkers(self.setup.trainer, config, precompile_next=bool(config.compile_ahead))
        else:
            names = [str(d) for d in self.setup.devices]
            self.workers = LocalWorkers(self.setup.trainers, config, names)
        self.workers = remote.across_processes(self.workers, self.setup, config, dist_session.current(), self.log)
        self.budget = budget.Budget(config.reward, self.setup.num_classes, self.workdir, self.log)
        if len(self.setup.trainers) > 1 or self.lag:
            self.log(f"search: {len(self.setup.trainers)} worker(s), lag {self.lag}")
        self.logfile = run_log.RunLog(self.workdir)

    def loop(self, stops: StopSignals, show_progress: bool | None) -> None:
        config = self.config
        self.bar = progress.progress_bar(config, self.state.counter, show_progress)
        for d in self.state.pending:  # the jobs of the last checkpoint: in flight or queued when it was written
            if d["job"]["index"] < config.num_candidates:
                self.workers.submit(Proposal.from_dict(d).job)
        outcomes = {}
        while self.state.counter < config.num_candidates:
            index = self.state.counter
            progress.set_stage(self.bar, index, "1-2", self.state.best_reward)
            while index not in outcomes:
                outcome = self.workers.next_outcome(timeout_s=None)
                if outcome is None:
                    raise RuntimeError(f"search: candidate {index} was never submitted (a bug)")
                outcomes[outcome.index] = outcome
            record, new_state, proposal = self.candidate(outcomes.pop(index))
            with stops.critical():
                self.commit(record, new_state)
            if proposal.index < config.num_candidates:
                self.workers.submit(proposal.job)
            progress.after_candidate(self.bar, record, self.state.best_reward)
            if config.log.plot_every and self.state.counter % config.log.plot_every == 0:
                self.refresh()
            self.streak.add(record["failure"])
            if self.streak.count >= config.failures.max_consecutive > 0:
                self.refresh()
                self.streak.check(config.failures.max_consecutive, self.workdir)

    def candidate(self, outcome: Outcome) -> tuple[dict, SearchState, Proposal]:
        """Commits ``outcome`` (the next candidate in index order) to the agent and the early-stop state; returns
        its log record, the state after it and the proposal it makes possible (candidate index + 1 + lag)."""
        state, config = self.state, self.config
        index = state.counter
        current = Proposal.from_dict(state.pending[0])
        assert current.index == index == outcome.index, (current.index, index, outcome.index)
        genotype = gt.Genotype.from_actions(list(current.job.actions))
        rec = self.budget.apply(dict(outcome.fields), genotype)  # quality x (measure / target) ** w (fdn.search.budget)
        agent_start = time.time()
        agent_state, metrics = self.agent.update(
            state.agent, np.asarray([current.job.actions], np.int32), [current.log_prob], [rec["reward"]]
        )
        metrics = jax.device_get(metrics)
        es_state = state.early_stop
        if config.early_stop.enabled:  # the committed state takes every stage-1 reward in index order
            es_state, _, _ = early_stop.step(es_state, rec["stage1_reward"] or 0.0, index)
        proposal, agent_state = proposals.propose(self.agent, agent_state, index + 1 + self.lag, state.rng, es_state)
        seconds = dict(rec["seconds"])
        seconds["agent"] = time.time() - agent_start
        seconds["total"] = seconds.pop("worker_total", 0.0) + seconds["agent"]
        record = {
            "index": index,
            "genotype": genotype.to_list(),
            "hash": genotype.short_hash,
            **{k: rec[k] for k in rec if k != "seconds"},
            "controller_step": int(agent_state.step),
            "entropy": current.entropy,
            "log_prob": current.log_prob,
            "baseline": float(metrics["baseline"]),
            "agent": config.agent,
            "seconds": seconds,
            "time": time.time(),
        }
        new_state = SearchState(
            agent=agent_state,
            rng=state.rng,
            counter=index + 1,
            early_stop=es_state,
            best_reward=max(state.best_reward, rec["reward"]),
            pending=[*state.pending[1:], proposal.to_dict()],
        )
        return record, new_state, proposal

    def commit(self, record: dict, new_state: SearchState) -> None:
        """The log line, then the checkpoint that counts it (`fdn.search.run_log`); run inside ``critical()``."""
        new_state.log_size = self.logfile.append(record)
        new_state.elapsed = self.elapsed0 + time.time() - self.session_start
        self.checkpointer.save(new_state)
        self.state = new_state

    def refresh(self) -> None:
        if self.refresh_report is None:
            return
        try:
            self.refresh_report(self.workdir)
        except Exception as err:  # noqa: BLE001  (a plotting problem must never stop a search)
            self.log(f"search: could not refresh the report: {type(err).__name__}: {err}")

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        if self.setup is not None:
            self.setup.close()
        if self.bar is not None:
            self.bar.close()
        if self.logfile is not None:
            self.logfile.close()
        self.checkpointer.close()
