"""The search loop end to end: resume after SIGKILL, failures, determinism, and the real trainer on
``configs/voc.py:tiny`` with a miniature VOC tree.

Most tests pass ``tests.fake_candidate.CandidateTrainer`` as the loop's trainer factory (instant, deterministic
training behind the declared contract, `fdn.candidate.protocol`) so that they check the loop, not the models;
``test_voc_tiny_real_trainer`` runs `fdn.candidate` itself.
"""

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from configs import voc
from fdn.candidate import CandidateTrainer, protocol
from fdn.errors import UserError
from fdn.search import loop as search_loop
from fdn.search import run_log
from fdn.search import setup as setup_lib
from tests import fake_candidate
from tests.data import trees

ROOT = Path(__file__).resolve().parents[1]
XLA_CACHE = Path(os.environ.get("FDN_TEST_XLA_CACHE", "/tmp/fdn_test_xla_cache"))


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory):
    """A prepared miniature voc_sbd (`tests.data.trees.prepared_voc_sbd`)."""
    return trees.prepared_voc_sbd(tmp_path_factory.mktemp("voc"))


def tiny_config(data_dir, n=4, agent="ppo"):
    c = voc.get_config("tiny")
    c.data.data_dir = str(data_dir)
    c.num_candidates = n
    c.agent = agent
    c.candidate.compilation_cache_dir = str(XLA_CACHE)
    return c


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in ("seconds", "time", "steps_per_s")} for r in records]


def run(config, workdir, fake=True):
    factory = fake_candidate.CandidateTrainer if fake else CandidateTrainer
    return search_loop.run(config, workdir, trainer_factory=factory, progress=False, log=lambda *a: None)


def _accepts_the_protocol_call(cls, name) -> bool:
    """``cls.name`` takes the protocol method's parameters, in order; anything more has a default."""
    declared = list(inspect.signature(getattr(protocol.Trainer, name)).parameters)
    own = list(inspect.signature(getattr(cls, name)).parameters.values())
    return [p.name for p in own[: len(declared)]] == declared and all(
        p.default is not inspect.Parameter.empty for p in own[len(declared) :]
    )


@pytest.mark.parametrize("trainer_cls", [CandidateTrainer, fake_candidate.CandidateTrainer], ids=["real", "fake"])
def test_trainers_implement_the_search_contract(trainer_cls):
    """Both trainers are ``TrainerFactory``s whose products are ``Trainer``s (`fdn.candidate.protocol`): the
    loop calls nothing else."""
    assert isinstance(trainer_cls, protocol.TrainerFactory)
    factory_args = inspect.signature(protocol.TrainerFactory.__call__).parameters
    own_args = inspect.signature(trainer_cls).parameters
    assert list(own_args) == [a for a in factory_args if a != "self"]
    for name in ("precompile", "stage1", "stage2"):
        assert _accepts_the_protocol_call(trainer_cls, name), name
    fake = fake_candidate.CandidateTrainer(None, 3, {}, None, lambda: iter(()), [])
    assert isinstance(fake, protocol.Trainer)


def test_failures_get_reward_zero_and_the_search_goes_on(voc_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FDN_FAKE_FAIL", "stage1:1,nan:2")
    summary = run(tiny_config(voc_dir, n=4), tmp_path)
    records = run_log.read(tmp_path)
    assert summary["candidates"] == 4 and [r["index"] for r in records] == [0, 1, 2, 3]
    assert records[1]["reward"] == 0.0 and records[1]["failure"] == "injected stage-1 failure"
    assert records[1]["stage"] == 1 and not records[1]["stopped_early"]
    assert records[2]["reward"] == 0.0 and "non-finite" in records[2]["failure"]
    assert records[0]["failure"] is None and records[0]["reward"] > 0
    assert records[3]["failure"] is None
    # the agent saw the zeros: its step counts every candidate
    assert [r["controller_step"] for r in records] == [1, 2, 3, 4]


def test_same_seed_same_search_and_resume_is_seamless(voc_dir, tmp_path):
    """Two runs with one seed agree; a run stopped after 2 and resumed to 5 equals an uninterrupted one."""
    straight = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "a", 5)))
    # Rewards that carry information: non-zero, and from stage 2, where the fake trainer's reward depends on
    # the batches of the candidate's own stage-2 stream (seeded by its index: another candidate's batches
    # change them).
    assert all(r["reward"] > 0 for r in straight) and sum(r["stage"] == 2 for r in straight) >= 3
    again = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "b", 5)))
    assert straight == again
    _run_to(voc_dir, tmp_path / "c", 2)
    resumed = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "c", 5)))
    assert resumed == straight
    other = tiny_config(voc_dir, n=5)
    other.seed = 1
    run(other, tmp_path / "d")
    assert [r["genotype"] for r in run_log.read(tmp_path / "d")] != [r["genotype"] for r in straight]


def test_best_reward_is_the_maximum_and_survives_a_resume(voc_dir, tmp_path):
    """The summary's best reward is the largest logged one (not the last), and a resumed session still knows it."""
    summary = run(tiny_config(voc_dir, n=4), tmp_path)
    rewards = [r["reward"] for r in run_log.read(tmp_path)]
    assert rewards[-1] < max(rewards)  # with this seed: so the last reward cannot pass for the best
    assert summary["best_reward"] == max(rewards)
    again = run(tiny_config(voc_dir, n=4), tmp_path)  # a resume with nothing left to train
    assert again["candidates"] == 4 and again["best_reward"] == max(rewards)


def _run_to(voc_dir, workdir, n, **overrides):
    config = tiny_config(voc_dir, n=n)
    config.update(overrides)
    run(config, workdir)
    return workdir


def test_compile_ahead_resumes_the_pending_candidate(voc_dir, tmp_path):
    """With look-ahead proposals the next candidate is checkpointed, so resuming changes nothing either."""
    straight = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "a", 4, compile_ahead=True)))
    _run_to(voc_dir, tmp_path / "b", 2, compile_ahead=True)
    resumed = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "b", 4, compile_ahead=True)))
    assert resumed == straight
    assert all(r["reward"] > 0 for r in straight) and any(r["stage"] == 2 for r in straight)
    assert len({json.dumps(r["genotype"]) for r in straight}) == 4


def test_resume_refuses_other_settings(voc_dir, tmp_path):
    run(tiny_config(voc_dir, n=1), tmp_path)
    c = tiny_config(voc_dir, n=2)
    c.candidate.stage1.lr = 0.1
    with pytest.raises(ValueError, match=r"other search settings: candidate\.stage1\.lr \(0\.003 -> 0\.1\);") as err:
        run(c, tmp_path)
    assert isinstance(err.value, UserError)  # `python -m fdn.search` reports it in one line, exit 2
    c.candidate.stage1.lr = 0.003
    c.log.top_k = 3  # a runtime key: resuming with it changed is fine
    assert run(c, tmp_path)["candidates"] == 2


def test_sigkill_mid_run_then_resume(voc_dir, tmp_path):
    """Kill -9 a running search, tear its last line, resume: indexes continue, no duplicate/corrupt line."""
    n = 8
    cmd = [
        sys.executable,
        "-m",
        "tests.fake_candidate",
        "--config=configs/voc.py:tiny",
        f"--workdir={tmp_path}",
        f"--config.data.data_dir={voc_dir}",
        f"--config.num_candidates={n}",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
    ]
    env = dict(os.environ, FDN_FAKE_SLEEP="0.4")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / run_log.FILENAME
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    time.sleep(0.3)  # somewhere inside the next candidate, or inside its log/checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_lines = len(log.read_bytes().splitlines())
    with open(log, "ab") as f:  # a torn line, as a kill during the write would leave
        f.write(b'{"index": 99, "rew')
    assert killed_lines < n
    env["FDN_FAKE_SLEEP"] = "0"
    subprocess.run(
        cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240
    )
    lines = log.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]  # every line is complete JSON
    assert [r["index"] for r in records] == list(range(n))
    assert len({r["index"] for r in records}) == n


def test_ctrl_c_stops_cleanly_and_resumes(voc_dir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "tests.fake_candidate",
        "--config=configs/voc.py:tiny",
        f"--workdir={tmp_path}",
        f"--config.data.data_dir={voc_dir}",
        "--config.num_candidates=50",
        f"--config.candidate.compilation_cache_dir={XLA_CACHE}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=dict(os.environ, FDN_FAKE_SLEEP="0.2"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    log = tmp_path / run_log.FILENAME
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(log.read_bytes().splitlines()) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out.decode()[-2000:]
    assert b"interrupted" in out
    records = run_log.read(tmp_path)
    from fdn.search.state import SearchCheckpointer

    assert SearchCheckpointer(tmp_path).latest_step() == len(records)


def test_voc_tiny_real_trainer_stage1(voc_dir, tmp_path):
    """configs/voc.py:tiny with the real candidate trainer, stage 1 only (the stage-2 compile of a whole
    segmenter takes minutes on a loaded 2-core CPU; the slow test below runs it)."""
    config = tiny_config(voc_dir, n=2)
    config.max_stage = 1
    config.encoder.calibrate_batches = 1  # the demo's random-encoder BN re-estimation, through the search
    run(config, tmp_path, fake=False)
    records = run_log.read(tmp_path)
    assert [r["index"] for r in records] == [0, 1]
    for r in records:
        assert r["failure"] is None, r["failure"]
        assert r["stage"] == 1 and 0.0 <= r["reward"] <= 1.0 and r["params"] > r["params_without_aux"] > 0
        assert r["seconds"]["compile"] > 0 and r["steps_per_s"]["stage1"] > 0
    # same seed, same genotypes and rewards with the real trainer too (CPU; compiles now come from the cache)
    run(config, tmp_path / "again", fake=False)
    assert strip_times(run_log.read(tmp_path / "again")) == strip_times(records)


def test_voc_tiny_real_trainer(voc_dir, tmp_path):
    """configs/voc.py:tiny with the real candidate trainer, both stages: every candidate is scored and logged."""
    config = tiny_config(voc_dir, n=2)
    summary = run(config, tmp_path, fake=False)
    records = run_log.read(tmp_path)
    assert summary["candidates"] == 2 and len(records) == 2
    for r in records:
        assert r["failure"] is None, r["failure"]
        assert 0.0 <= r["reward"] <= 1.0 and r["params"] > r["params_without_aux"] > 0
        assert set(r["seconds"]) >= {"compile", "stage1", "stage2", "eval", "total"}
        assert r["stage"] in (1, 2)


def test_stage2_crops_made_on_the_device_are_deterministic_and_resume(voc_dir, tmp_path):
    """``candidate.stage2.input='device'`` (`fdn.data.device_source`): the fake trainer's stage-2 reward reads
    the device-made batches; two runs agree, a stopped and resumed run equals them, and the rewards differ from
    the host pipeline's (another generator: same distribution, other crops)."""

    def device_run(workdir, n):
        config = tiny_config(voc_dir, n=n)
        config.candidate.stage2.input = "device"
        run(config, workdir)
        return strip_times(run_log.read(workdir))

    straight = device_run(tmp_path / "a", 4)
    assert all(r["reward"] > 0 for r in straight) and sum(r["stage"] == 2 for r in straight) >= 2
    assert device_run(tmp_path / "b", 4) == straight
    device_run(tmp_path / "c", 2)
    assert device_run(tmp_path / "c", 4) == straight
    host = strip_times(run_log.read(_run_to(voc_dir, tmp_path / "h", 4)))
    stage2 = [i for i, r in enumerate(straight) if r["stage"] == 2 and host[i]["stage"] == 2]
    assert stage2 and all(straight[i]["reward"] != host[i]["reward"] for i in stage2)


def test_a_bad_stage2_input_is_one_line(voc_dir, tmp_path):
    config = tiny_config(voc_dir)
    config.candidate.stage2.input = "gpu"
    with pytest.raises(setup_lib.SearchConfigError, match="candidate.stage2.input='gpu': choose one of host, device"):
        run(config, tmp_path)
