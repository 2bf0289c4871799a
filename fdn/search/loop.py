"""The search loop: propose -> stage 1 -> early stop -> stage 2 -> reward -> agent update -> log -> checkpoint.

One candidate at a time, top to bottom (paper.md 3)::

    genotype = agent.propose()                      # the controller samples
    r1 = trainer.stage1(genotype)                   # decoder only, on the cached encoder outputs
    if early_stop.step(r1) says continue:           # the official TaskPerformer rule, seeded
        r = trainer.stage2(genotype, r1)            # end to end
    agent.update(genotype, r)                       # failures count with reward 0
    candidates.jsonl += one line; checkpoint        # in that order (see fdn.search.run_log)

Resuming: ``--workdir`` of an existing run restores the agent, early-stop state, RNG key and data iterator
from the latest checkpoint and cuts ``candidates.jsonl`` back to the length recorded with it, so a killed
run (SIGKILL included) loses at most the candidate in flight. Every candidate's randomness comes from the
loop key, split once per candidate, so a resumed run proposes and trains exactly what an uninterrupted one
would (on CPU). A resume with other result-deciding settings, a log shorter than its checkpoint or a damaged
checkpoint stop at once with one line (`fdn.errors.UserError`), before anything is written.

Stopping: Ctrl-C and SIGTERM (`fdn.interrupts.StopSignals`) drop the candidate in flight; a signal during the
log/checkpoint write waits for it to finish, so the last checkpoint is complete; the summary says which
signal. ``failures.max_consecutive`` candidates failing in a row with one reason stop the search with one line
(`fdn.search.failure_streak`), their lines and checkpoint kept.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from fdn.agents import make_agent
from fdn.candidate import CandidateTrainer, TrainerFactory, enable_compilation_cache
from fdn.interrupts import StopSignals, exit_code_of
from fdn.search import budget, early_stop, progress, run_log
from fdn.search import setup as setup_lib
from fdn.search.candidate_run import run_candidate  # also importable from here (failure-injection tests)
from fdn.search.failure_streak import FailureStreak
from fdn.search.proposals import CompileAhead, next_proposal
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


def _signal_name(err: KeyboardInterrupt) -> str:
    return signal.Signals(getattr(err, "signum", signal.SIGINT)).name


class _Search:
    """One session of a search: its restored state, set-up, log and checkpointer, and the steps of the loop."""

    def __init__(self, config, workdir: Path, trainer_factory, refresh_report, log):
        self.config, self.workdir, self.log = config, workdir, log
        self.trainer_factory, self.refresh_report = trainer_factory, refresh_report
        self.setup = self.logfile = self.bar = None
        self.ahead = CompileAhead()
        workdir.mkdir(parents=True, exist_ok=True)
        if config.candidate.compilation_cache_dir:  # before the set-up: the encoder and teacher compile there too
            enable_compilation_cache(config.candidate.compilation_cache_dir)
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
        state = self.checkpointer.restore(fresh) or fresh
        dropped = run_log.truncate_to(self.workdir, state.log_size)
        if state.counter:
            self.log(
                f"search: resuming {self.workdir} after candidate {state.counter - 1}"
                f"{f' (dropped {dropped} bytes of an unfinished candidate)' if dropped else ''}"
            )
        return state, FailureStreak.from_records(run_log.read(self.workdir) if state.counter else [])

    def set_up(self) -> None:
        budget.check(self.config.reward)  # a bad reward.* setting stops before minutes of set-up
        self.setup = setup_lib.build(self.config, self.workdir, trainer_factory=self.trainer_factory, log=self.log)
        setup_lib.restore_iterators(self.setup.iterators, self.state.data)
        self.budget = budget.Budget(self.config.reward, self.setup.num_classes, self.workdir, self.log)
        self.logfile = run_log.RunLog(self.workdir)

    def loop(self, stops: StopSignals, show_progress: bool | None) -> None:
        config = self.config
        self.bar = progress.progress_bar(config, self.state.counter, show_progress)
        while self.state.counter < config.num_candidates:
            record, new_state = self.candidate()
            with stops.critical():
                self.commit(record, new_state)
            progress.after_candidate(self.bar, record, self.state.best_reward)
            if config.log.plot_every and self.state.counter % config.log.plot_every == 0:
                self.refresh()
            self.streak.add(record["failure"])
            if self.streak.count >= config.failures.max_consecutive > 0:
                self.refresh()
                self.streak.check(config.failures.max_consecutive, self.workdir)

    def candidate(self) -> tuple[dict, SearchState]:
        """Proposes, trains and scores the next candidate; returns its log record and the state after it."""
        state, config, bar = self.state, self.config, self.bar
        start = time.time()
        index = state.counter
        key, cand_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        genotype, agent_state, info, pending = next_proposal(self.agent, state, config.compile_ahead)
        agent_seconds = time.time() - start
        self.ahead.wait()  # the previous look-ahead compile, if still running
        if pending is not None:
            self.ahead.start(self.setup.trainer, pending)
        progress.set_stage(bar, index, "1", state.best_reward)
        rec, es_state = run_candidate(
            self.setup.trainer,
            genotype,
            cand_key,
            state.early_stop,
            config,
            on_stage=lambda s: progress.set_stage(bar, index, str(s), state.best_reward),
        )
        rec = self.budget.apply(rec, genotype)  # reward = quality x (measure / target) ** w (fdn.search.budget)
        agent_start = time.time()
        agent_state, metrics = self.agent.update(agent_state, info["actions"], info["log_probs"], [rec["reward"]])
        metrics = jax.device_get(metrics)
        rec["seconds"]["agent"] = agent_seconds + time.time() - agent_start
        rec["seconds"]["total"] = time.time() - start
        record = {
            "index": index,
            "genotype": genotype.to_list(),
            "hash": genotype.short_hash,
            **{k: rec[k] for k in rec if k != "seconds"},
            "controller_step": int(agent_state.step),
            "entropy": float(info["entropies"][0]),
            "log_prob": float(info["log_probs"][0]),
            "baseline": float(metrics["baseline"]),
            "agent": config.agent,
            "seconds": rec["seconds"],
            "time": time.time(),
        }
        new_state = SearchState(
            agent=agent_state,
            rng=np.asarray(jax.random.key_data(key)),
            counter=index + 1,
            early_stop=es_state,
            best_reward=max(state.best_reward, rec["reward"]),
            pending=pending,
        )
        return record, new_state

    def commit(self, record: dict, new_state: SearchState) -> None:
        """The log line, then the checkpoint that counts it (`fdn.search.run_log`); run inside ``critical()``."""
        new_state.log_size = self.logfile.append(record)
        new_state.data = setup_lib.iterator_states(self.setup.iterators)
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
        self.ahead.wait()
        if self.bar is not None:
            self.bar.close()
        if self.logfile is not None:
            self.logfile.close()
        self.checkpointer.close()
