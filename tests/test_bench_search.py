"""``python -m fdn.bench search``: flags and presets, the steps_scale arithmetic, the device peak table, XLA's
cost figures, the phase bookkeeping, and (slow) one tiny end-to-end run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from absl import flags

from fdn.bench import __main__ as bench_main
from fdn.bench import _gpu_table, _presets, _search_report
from fdn.bench import search as bench_search
from fdn.bench._cost import achieved, peak_of, program_cost

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_flags():
    yield
    bench_search.FLAGS.unparse_flags()  # every test parses the bench's own flags from their defaults


def _parse(*args):
    bench_search.FLAGS.unparse_flags()
    bench_search.FLAGS(["fdn.bench search", *args])
    return bench_search.FLAGS


# ------------------------------------------------------------------------------------------ flags, presets
def test_flags_parse_preset_candidates_programs_and_scale():
    f = _parse("--preset=demo", "--candidates=3", "--programs=per_genotype", "--steps_scale=0.02")
    assert (f.preset, f.candidates, f.programs, f.steps_scale) == ("demo", 3, "per_genotype", 0.02)
    f = _parse()
    assert (f.preset, f.candidates, f.programs, f.steps_scale, f.early_stop_rate) == ("paper", 2, None, 1.0, 0.38)
    assert f.precision is None and _parse("--precision=bfloat16").precision == "bfloat16"


@pytest.mark.parametrize("bad", ["--preset=voc", "--programs=both", "--candidates=two", "--precision=fp16"])
def test_bad_flags_are_rejected(bad):
    with pytest.raises(flags.Error):
        _parse(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--candidates=0"], "--candidates"),
        (["--steps_scale=0"], "--steps_scale"),
        (["--steps_scale=1.5"], "--steps_scale"),
        (["--early_stop_rate=1"], "--early_stop_rate"),
        (["--preset=voc"], "preset"),
    ],
)
def test_unusable_values_exit_2_with_one_line(args, message, capsys):
    assert bench_main.main(["fdn.bench", "search", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fdn.bench search: error:") and message in err[0]


def test_presets_are_the_search_configs():
    paper = _presets.preset_config("paper")
    assert paper.data.name == "voc_sbd" and paper.candidate.stage1.num_examples == 4000
    assert _presets.preset_config("demo").data.name == "fdn_shapes"
    assert _presets.preset_config("tiny").candidate.decoder.agg_size == 8
    with pytest.raises(_presets.PresetError, match="unknown preset"):
        _presets.preset_config("voc")


# ------------------------------------------------------------------------------------------ steps_scale
def test_paper_at_full_length_is_the_paper_schedule():
    config, schedule = bench_search.bench_config("paper", 1.0, None, False)
    assert (schedule.stage1_steps, schedule.stage2_steps, schedule.val_batches) == (310, 297, 16)
    assert (schedule.full_stage1_steps, schedule.full_stage2_steps, schedule.full_val_batches) == (310, 297, 16)
    cc = config.candidate
    assert (cc.stage1.num_examples, cc.stage2.steps_per_epoch, config.data.val_examples) == (3968, 297, 1024)
    # 'auto' is resolved for the full-length stage 1: per genotype on a CPU (fdn.candidate.programs.resolve_kind)
    want = "per_genotype" if jax.default_backend() == "cpu" else "universal"
    assert cc.programs == want and cc.compilation_cache_dir == ""


def test_paper_at_two_percent_keeps_batches_and_crops():
    config, schedule = bench_search.bench_config("paper", 0.02, "per_genotype", False)
    cc = config.candidate
    # stage 1: 62 steps per epoch -> round(1.24) = 1, x 5 epochs; stage 2: round(5.94) = 6; val: 16 -> 1 batch
    assert (schedule.stage1_steps, schedule.stage2_steps, schedule.val_batches) == (5, 6, 1)
    assert (cc.stage1.num_examples, config.data.val_examples) == (64, 64)
    assert (cc.stage1.batch_size, cc.stage1.crop_size, cc.stage2.batch_size, cc.stage2.crop_size) == (64, 256, 32, 350)
    assert (cc.val.batch_size, cc.val.crop_size, cc.programs) == (64, 400, "per_genotype")
    assert schedule.ratio("stage1") == 62.0 and schedule.ratio("stage2") == 49.5 and schedule.ratio("val") == 16.0


def test_tiny_scale_runs_at_least_one_step_of_everything():
    config, schedule = bench_search.bench_config("demo", 1e-6, None, True)
    assert (schedule.stage1_steps, schedule.stage2_steps, schedule.val_batches) == (3, 1, 1)  # 3 epochs x 1 step
    assert config.candidate.compilation_cache_dir == "~/.cache/fdn/xla"  # kept on request


# ------------------------------------------------------------------------------------------ peaks, cost
@pytest.mark.parametrize(
    "kind, name, hbm",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 3.35),
        ("NVIDIA H200", "H200", 4.8),
        ("NVIDIA H100 PCIe", "H100 PCIe", 2.0),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM", 2.039),
    ],
)
def test_peak_table_knows_the_benchmarked_gpus(kind, name, hbm):
    peak = peak_of(kind)
    assert peak.name == name and peak.hbm_tbps == hbm and peak.source


def test_unknown_devices_have_no_peak_and_no_fractions():
    assert peak_of("cpu") is None and peak_of("TPU v5 lite") is None
    out = achieved({"flops": 2e12, "bytes": 1e9}, 0.5, None)
    assert out["tflops"] == 4.0 and out["gbps"] == 2.0 and out["of_bf16_peak"] is None and out["of_hbm_peak"] is None


def test_fractions_of_a_known_peak():
    out = achieved({"flops": 989e12, "bytes": 4.8e12}, 1.0, peak_of("NVIDIA H200"))
    assert out["of_bf16_peak"] == pytest.approx(1.0) and out["of_hbm_peak"] == pytest.approx(1.0)
    assert out["of_f32_peak"] == pytest.approx(989 / 67)


def test_cost_counts_a_scan_body_once():
    """The stage-1 program is a scan over steps: its XLA count is one step's, which the bench relies on."""

    def program(n):
        def f(x, w):
            return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=n)[0]

        x = jnp.ones((32, 32))
        return program_cost(jax.jit(f).lower(x, x).compile())

    one, five = program(1), program(5)
    assert one["flops"] == pytest.approx(2 * 32**3, rel=0.01) and one["bytes"] > 0
    assert five["flops"] == pytest.approx(one["flops"], rel=0.01)


# ------------------------------------------------------------------------------------------ phases
def _stage(compile_s, train, evaluation, total, wait=None):
    s = {"compile": compile_s, "train": train, "eval": evaluation, "total": total}
    return s if wait is None else {**s, "input_wait": wait}


def test_phases_add_up_to_the_candidate_and_split_the_input_wait():
    phases = _search_report.phase_seconds(_stage(3.0, 2.0, 1.0, 6.5), _stage(4.0, 5.0, 2.0, 11.25, wait=1.5))
    assert phases["stage-2 train"] == 3.5 and phases["input wait"] == 1.5
    assert phases["stage-1 other"] == 0.5 and phases["stage-2 other"] == 0.25
    assert sum(phases.values()) == pytest.approx(6.5 + 11.25)


def test_full_scale_and_candidates_per_hour():
    schedule = _presets.Schedule(5, 6, 1, 310, 297, 16)
    phases = {k: 1.0 for k in _search_report.PHASES}
    full = _search_report.full_scale(
        phases, schedule, compile_per_candidate={"compile stage 1": 0.0, "compile stage 2": 0.0}
    )
    assert full["stage-1 train"] == 62.0 and full["input wait"] == 49.5 and full["stage-2 eval"] == 16.0
    assert full["stage-1 other"] == 1.0 and full["compile stage 1"] == 0.0
    stage1, stage2 = 62 + 16 + 1, 49.5 * 2 + 16 + 1
    assert _search_report.candidate_seconds(full, 0.38) == pytest.approx(stage1 + 0.62 * stage2)
    assert _search_report.steady_state([{k: 9.0 for k in phases}, phases])["stage-1 eval"] == 1.0
    table = _search_report.format_table(phases, full, schedule, early_stop_rate=0.38)
    assert table[-1].endswith(f"{3600 / (stage1 + 0.62 * stage2):.1f} candidates/hour")


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path):
    """One candidate of the tiny preset on synthetic JPEGs: the table, then the JSON line.

    Minutes: the compiles (2.5 min alone on 2 cores, 15+ when shared)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fdn.bench",
            "search",
            "--preset=tiny",
            "--steps_scale=0.01",
            "--candidates=1",
            "--data=synthetic",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=1800,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "search" and result["jax"] == jax.__version__ and result["candidates"] == 1
    assert set(result["programs_cost"]) == {"stage1", "eval", "stage2"}
    want_depthwise = "shifted" if jax.default_backend() == "cpu" else "xla"
    assert result["precision"] == "float32" and result["depthwise"] == want_depthwise  # the preset's, and auto's
    assert all(r["flops"] > 0 for r in result["programs_cost"].values())
    assert result["phases"]["input wait"] > 0 and result["candidates_per_hour"] > 0
    assert any(line.startswith("stage-1 train") for line in lines)
    # launch/gpu_bench.sh's report reads this very line (its field names)
    report = _gpu_table.markdown({"search_paper": result}, "versions")
    assert "| (preset tiny: not judged) |" in report and "| stage2 |" in report
