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
would (on CPU). Ctrl-C stops after the candidate in flight is dropped; the last checkpoint is complete, and
a Ctrl-C during the log/checkpoint write waits for it to finish.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from fdn.agents import make_agent
from fdn.candidate import CandidateTrainer, Trainer, TrainerFactory, enable_compilation_cache
from fdn.candidate.protocol import failure_reason
from fdn.search import early_stop, run_log
from fdn.search import setup as setup_lib
from fdn.search.state import SearchCheckpointer, SearchState

# Settings that may change between sessions of one run without making its checkpoint meaningless.
RUNTIME_KEYS = ("num_candidates", "log", "data.data_dir", "data.worker_count", "data.auto_prepare",
                "candidate.compilation_cache_dir", "teacher.train.log_every")


def fingerprint(config) -> str:
    """A short hash of the settings that decide the search's results (see `RUNTIME_KEYS`)."""
    d = json.loads(config.to_json_best_effort())
    for key in RUNTIME_KEYS:
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


class _Interrupts:
    """Ctrl-C raises KeyboardInterrupt at once, except inside `critical()`, where it waits until the end."""

    def __init__(self):
        self.pending = False
        self.in_critical = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if self.in_critical:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        self.in_critical = True
        try:
            yield
        finally:
            self.in_critical = False
        if self.pending:
            raise KeyboardInterrupt


def _finite(result) -> bool:
    values = [result.reward, *result.metrics.values()]
    return all(math.isfinite(float(v)) for v in values if v is not None)


def run_candidate(trainer: Trainer, genotype, key, es_state, config, on_stage=None) -> tuple[dict, dict]:
    """Trains and scores one candidate; returns (its log fields, the new early-stop state).

    Any exception but KeyboardInterrupt (`CandidateFailure`, out of memory, a compile error) and any
    non-finite reward or metric makes the reward 0 with the reason recorded; the search goes on. A failure in
    stage 1 steps the early-stop rule with reward 0, as the official code (its stage returns 0).
    """
    rec = {"stage": 0, "stopped_early": False, "failure": None, "reward": 0.0, "stage1_reward": None,
           "miou": None, "macc": None, "fwiou": None, "params": None, "params_without_aux": None,
           "early_stop_threshold": None}
    seconds = {"compile": 0.0, "stage1": 0.0, "stage2": 0.0, "eval": 0.0}
    steps_per_s = {}
    # Raw uint32 keys (``PRNGKey`` style): what the trainer's ahead-of-time compiled programs take.
    k1, k2 = (jax.random.key_data(k) for k in jax.random.split(key))

    def account(result, stage):
        s = result.seconds
        seconds["compile"] += float(s["compile"])
        seconds[f"stage{stage}"] += float(s["train"])
        seconds["eval"] += float(s["eval"])
        if result.steps_per_second is not None:
            steps_per_s[f"stage{stage}"] = result.steps_per_second
        rec.update(stage=stage, reward=float(result.reward), params=int(result.params_total),
                   params_without_aux=int(result.params_without_aux),
                   **{m: float(result.metrics[m]) for m in ("miou", "macc", "fwiou") if m in result.metrics})
        if not _finite(result):
            raise FloatingPointError(f"non-finite reward or metrics in stage {stage}: {result.metrics}")

    stage = 1
    try:
        if on_stage:
            on_stage(1)
        r1 = trainer.stage1(genotype, k1)
        account(r1, 1)
        rec["stage1_reward"] = rec["reward"]
        go_on = True
        if config.early_stop.enabled:
            es_state, go_on, info = early_stop.step(es_state, rec["reward"])
            rec["early_stop_threshold"] = info["threshold"]
        if not go_on:
            rec["stopped_early"] = True
        elif config.max_stage >= 2:
            stage = 2
            if on_stage:
                on_stage(2)
            account(trainer.stage2(genotype, r1, k2), 2)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001  (every failure is a 0 reward, as the official search does)
        rec["failure"] = failure_reason(err)
        rec.update(stage=stage, reward=0.0)
        if stage == 1 and config.early_stop.enabled and rec["early_stop_threshold"] is None:
            es_state, _, info = early_stop.step(es_state, 0.0)
            rec["early_stop_threshold"] = info["threshold"]
    rec["seconds"] = seconds
    rec["steps_per_s"] = steps_per_s
    return rec, es_state


def run(config, workdir, *, trainer_factory: TrainerFactory = CandidateTrainer,
        refresh_report: Callable | None = None, progress: bool | None = None, log=print) -> dict:
    """Runs (or resumes) the search in ``workdir`` up to ``config.num_candidates``; returns a summary.

    ``trainer_factory`` builds what trains the candidates (`fdn.candidate.protocol`); the search tests pass
    ``tests.fake_candidate.CandidateTrainer``.
    """
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    wall_start = time.time()
    if config.candidate.compilation_cache_dir:  # before the set-up: the encoder and teacher compile there too
        enable_compilation_cache(config.candidate.compilation_cache_dir)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    # ---------------------------------------------------------------------------- agent and state
    agent = make_agent(config.agent, config.agent_config)
    agent_key, loop_key = jax.random.split(jax.random.key(config.seed))
    fresh = SearchState(agent=agent.init(agent_key), rng=np.asarray(jax.random.key_data(loop_key)),
                        early_stop=early_stop.init(config.seed, config.early_stop.maxval, config.early_stop.delta))
    checkpointer = SearchCheckpointer(workdir, fingerprint(config))
    state = checkpointer.restore(fresh) or fresh
    dropped = run_log.truncate_to(workdir, state.log_size)
    if state.counter:
        log(f"search: resuming {workdir} after candidate {state.counter - 1}"
            f"{f' (dropped {dropped} bytes of an unfinished candidate)' if dropped else ''}")

    # --------------------------------------------------------------------------------- set-up
    setup = setup_lib.build(config, workdir, trainer_factory=trainer_factory, log=log)
    setup_lib.restore_iterators(setup.iterators, state.data)
    logfile = run_log.RunLog(workdir)

    # ------------------------------------------------------------------------------------ loop
    bar = _progress_bar(config, state, progress)
    ahead = _CompileAhead()
    session_start = time.time()
    elapsed0 = state.elapsed
    stopped = False
    try:
        with _Interrupts() as interrupts:
            while state.counter < config.num_candidates:
                start = time.time()
                index = state.counter
                key, cand_key = jax.random.split(jax.random.wrap_key_data(state.rng))
                agent_start = time.time()
                genotype, agent_state, info, pending = _next_proposal(agent, state, config.compile_ahead)
                agent_seconds = time.time() - agent_start
                ahead.wait()  # the previous look-ahead compile, if still running
                if pending is not None:
                    ahead.start(setup.trainer, pending)
                _set_stage(bar, index, "1", state.best_reward)
                rec, es_state = run_candidate(
                    setup.trainer, genotype, cand_key, state.early_stop, config,
                    on_stage=lambda s: _set_stage(bar, index, str(s), state.best_reward))
                agent_start = time.time()
                agent_state, metrics = agent.update(agent_state, info["actions"], info["log_probs"],
                                                    [rec["reward"]])
                metrics = jax.device_get(metrics)
                rec["seconds"]["agent"] = agent_seconds + time.time() - agent_start
                rec["seconds"]["total"] = time.time() - start
                record = {"index": index, "genotype": genotype.to_list(), "hash": genotype.short_hash,
                          **{k: rec[k] for k in rec if k != "seconds"},
                          "controller_step": int(agent_state.step), "entropy": float(info["entropies"][0]),
                          "log_prob": float(info["log_probs"][0]), "baseline": float(metrics["baseline"]),
                          "agent": config.agent, "seconds": rec["seconds"], "time": time.time()}
                with interrupts.critical():
                    log_size = logfile.append(record)
                    state = SearchState(
                        agent=agent_state, rng=np.asarray(jax.random.key_data(key)), counter=index + 1,
                        log_size=log_size, early_stop=es_state, data=setup_lib.iterator_states(setup.iterators),
                        best_reward=max(state.best_reward, rec["reward"]),
                        elapsed=elapsed0 + time.time() - session_start, pending=pending)
                    checkpointer.save(state)
                _after_candidate(bar, record, state)
                if refresh_report and config.log.plot_every and state.counter % config.log.plot_every == 0:
                    _refresh(refresh_report, workdir, log)
    except KeyboardInterrupt:
        stopped = True
        log(f"\nsearch: interrupted; {state.counter} candidates are saved in {workdir} (run again to resume)")
    finally:
        ahead.wait()
        if bar is not None:
            bar.close()
        logfile.close()
        checkpointer.close()
    if refresh_report and not stopped:
        _refresh(refresh_report, workdir, log)
    return {"candidates": state.counter, "best_reward": state.best_reward, "interrupted": stopped,
            "setup_seconds": setup.seconds, "wall_seconds": time.time() - wall_start}


def _next_proposal(agent, state, compile_ahead: bool):
    """``(genotype, agent_state, info, pending)`` of the candidate to run now.

    Without compile-ahead: one fresh proposal. With it, proposals run one candidate ahead: the candidate to run
    now was proposed (and its compile started) while the previous one trained, and the one after it is
    proposed now, from the policy before this candidate's update. PPO corrects for that lag with the
    sampling-time log-probabilities it stores; it is a deviation from the official loop, hence a setting.
    ``pending`` (JSON-able) goes into the checkpoint so that a resumed run runs the same candidate.
    """
    agent_state = state.agent
    if not compile_ahead:
        genotypes, agent_state, info = agent.propose(agent_state, 1)
        return genotypes[0], agent_state, info, None
    if state.pending is None:
        genotypes, agent_state, info = agent.propose(agent_state, 1)
        current = _pending_of(info)
    else:
        current = state.pending
    _, agent_state, info_next = agent.propose(agent_state, 1)
    info = {"actions": np.asarray([current["actions"]], np.int32), "log_probs": np.asarray([current["log_prob"]]),
            "entropies": np.asarray([current["entropy"]])}
    from fdn import genotype as gt

    return gt.Genotype.from_actions(current["actions"]), agent_state, info, _pending_of(info_next)


def _pending_of(info) -> dict:
    return {"actions": [int(a) for a in info["actions"][0]], "log_prob": float(info["log_probs"][0]),
            "entropy": float(info["entropies"][0])}


class _CompileAhead:
    """Compiles the next candidate's programs in a background thread while the current one trains.

    XLA compiles mostly on one thread, so on a small CPU this overlaps with training rather than competing
    with it for every core. Any error is left for the candidate itself to meet (and record).
    """

    def __init__(self):
        self._thread = None

    def start(self, trainer: Trainer, pending: dict) -> None:
        import threading

        from fdn import genotype as gt

        genotype = gt.Genotype.from_actions(pending["actions"])

        def work():
            try:
                trainer.precompile(genotype)
            except Exception:  # noqa: BLE001
                pass

        self._thread = threading.Thread(target=work, name="fdn-compile-ahead", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _refresh(refresh_report, workdir, log) -> None:
    try:
        refresh_report(workdir)
    except Exception as err:  # noqa: BLE001  (a plotting problem must never stop a search)
        log(f"search: could not refresh the report: {type(err).__name__}: {err}")


# ---------------------------------------------------------------------------------- progress line
def _progress_bar(config, state, progress):
    if progress is None:
        progress = config.log.progress
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=config.num_candidates, initial=state.counter, unit="cand", dynamic_ncols=True,
                desc="search", smoothing=0.1)


def _set_stage(bar, index, stage, best) -> None:
    if bar is not None:
        bar.set_postfix_str(f"cand {index} stage {stage} best {best:.4f}", refresh=True)


def _after_candidate(bar, record, state) -> None:
    if bar is None:
        return
    s = record["seconds"]
    status = "failed" if record["failure"] else ("stopped" if record["stopped_early"] else "done")
    bar.update(1)
    rates = " ".join(f"{k[-1]}:{v:.1f}" for k, v in record.get("steps_per_s", {}).items())
    bar.set_postfix_str(f"cand {record['index']} {status} r {record['reward']:.4f} best {state.best_reward:.4f} "
                        f"{s['total']:.1f}s (compile {s['compile']:.1f}s) steps/s {rates or '-'}", refresh=True)
