"""``fdn.bench._gpu_table``: ``launch/gpu_bench.sh``'s results as the README's Markdown, judged against #12's bars.

The unit tests feed it lines of the shape the benches print (the field names are pinned by the last test, which
feeds it a real ``fdn.bench stage1`` line, and by ``test_bench_search``'s end-to-end run for the search's line).
"""

import json

from fdn.bench import __main__ as bench_main
from fdn.bench import _gpu_table
from fdn.bench import stage1 as bench_stage1


def _cost(ms: float, hbm: float) -> dict:
    return {
        "flops": 2e11,
        "bytes": 1e10,
        "seconds_per_step": ms / 1e3,
        "tflops": 5.0,
        "gbps": 900.0,
        "of_f32_peak": 0.07,
        "of_bf16_peak": 0.005,
        "of_hbm_peak": hbm,
    }


def _search(preset="paper", candidate_s=14.2, stage1_ms=31.0) -> dict:
    phases = {"stage-1 train": 0.5, "stage-1 eval": 0.1, "stage-2 train": 0.6, "input wait": 0.0, "stage-2 eval": 0.1}
    phases |= {"stage-1 other": 0.2, "stage-2 other": 0.2, "compile stage 1": 0.0, "compile stage 2": 0.0}
    return {
        "bench": "search",
        "preset": preset,
        "steps_scale": 0.05,
        "device_kind": "NVIDIA H100 80GB HBM3",
        "programs": "universal",
        "stage1": "310 steps x batch 64, crop 256, cache 4000",
        "phases": phases,
        "phases_full": {k: 20 * v for k, v in phases.items()},
        "expected_candidate_seconds_full": candidate_s,
        "candidates_per_hour": 3600 / candidate_s,
        "compile_once_seconds": 61.0,
        "programs_cost": {"stage1": _cost(stage1_ms, 0.27), "eval": _cost(12.0, 0.4), "stage2": _cost(40.0, 0.3)},
    }


def _stage1(programs: str, ms: float, batch=64) -> dict:
    return {
        "bench": "stage1",
        "programs": programs,
        "precision": "float32",
        "depthwise": "xla",
        "batch": batch,
        "crop": 256,
        "seconds_per_step": ms / 1e3,
        "compile_seconds": 20.0,
        "gbps": 800.0,
        "of_hbm_peak": 0.24,
        "device": "NVIDIA H100 80GB HBM3",
    }


def _write(tmp_path, entries: list[dict], versions="Mon Dec 7\nGPU 0: NVIDIA H100\nabc1234 commit") -> None:
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (tmp_path / "versions.txt").write_text(versions)


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_bars_are_judged_at_the_paper_setting_and_what_did_not_run_is_named(tmp_path, capsys):
    _write(
        tmp_path,
        [
            {"step": "search_paper", "result": _search(candidate_s=14.2, stage1_ms=31.0)},
            {"step": "stage1_per_genotype", "result": _stage1("per_genotype", 35.0)},
            {"step": "stage1_universal", "result": _stage1("universal", 55.0)},
            {"step": "stage1_per_genotype_bf16", "skipped": True},
            {"step": "stage1_universal_graphs", "exit": 124},
        ],
    )
    assert _gpu_table.main(["_gpu_table", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "on NVIDIA H100 80GB HBM3" in text.splitlines()[0] and "abc1234 commit" in text
    candidate = _row(text, "| a paper-setting candidate")
    assert "14.2 s (254 per GPU-hour; universal programs)" in candidate and candidate.endswith("| **met** |")
    assert _row(text, "| stage-1 step in the search").endswith("| 31.0 ms | **met** |")
    assert _row(text, "| stage-1 step, batch 64, per_genotype").endswith("| 35.0 ms | **met** |")
    assert _row(text, "| stage-1 step, batch 64, universal").endswith("| 55.0 ms | not met |")
    assert _row(text, "| stage1 |").split(" | ")[1:4] == ["200.00", "10.00", "31.0"]  # GFLOP, GB, ms per step
    assert "27.0%" in _row(text, "| stage1 |")
    assert _row(text, "| **a candidate, expected").endswith("| **14.2** |")
    assert text.rstrip().splitlines()[-1] == (
        "did not run: stage1_per_genotype_bf16: skipped (budget); stage1_universal_graphs: exit 124 (see its log)"
    )


def test_slow_figures_fail_their_bars(tmp_path):
    steps = {"search_paper": _search(candidate_s=23.0, stage1_ms=47.0)}
    text = _gpu_table.markdown(steps, "v")
    assert _row(text, "| a paper-setting candidate").endswith("| not met |")
    assert _row(text, "| stage-1 step in the search").endswith("| 47.0 ms | not met |")
    assert "stage-1 step variants:\n\n(no stage-1 variant ran)" in text


def test_a_smoke_run_is_shown_but_not_judged():
    text = _gpu_table.markdown({"search_paper": _search(preset="tiny", candidate_s=1.0)}, "v")
    assert _row(text, "| a paper-setting candidate").endswith("| (preset tiny: not judged) |")
    assert "| stage-1 step, batch" not in text


def test_nothing_measured_says_so(tmp_path):
    text = _gpu_table.markdown({"search_paper": {"exit": 137}}, "v")
    assert "(no bar measured: every step was skipped or failed" in text
    assert text.rstrip().endswith("did not run: search_paper: exit 137 (see its log)")


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert _gpu_table.main(["_gpu_table", str(tmp_path / "none")]) == 2
    assert "results.jsonl does not exist: run `bash launch/gpu_bench.sh" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text('{"step": "search_paper"}\nnot json\n')
    assert _gpu_table.main(["_gpu_table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.jsonl:2 is not a line gpu_bench.sh writes" in err
    assert _gpu_table.main(["_gpu_table"]) == 2


def test_a_real_stage1_line_fills_its_row(tmp_path, capsys):
    """The stage-1 bench's own JSON line (tiny sizes), as gpu_bench.sh records it, makes a variants row."""
    argv = ["fdn.bench", "stage1", "--batch=1", "--crop=32", "--steps=1", "--warmup=0", "--programs=per_genotype"]
    try:
        assert bench_main.main(argv) == 0
    finally:
        bench_stage1.FLAGS.unparse_flags()
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _write(tmp_path, [{"step": "stage1_per_genotype", "result": result}])
    steps, versions = _gpu_table.load(tmp_path)
    text = _gpu_table.markdown(steps, versions)
    row = _row(text, "| stage1_per_genotype |")
    assert f"| per_genotype, float32, depthwise {result['depthwise']} | 1 x 32 |" in row
    assert f"| {result['seconds_per_step'] * 1e3:.1f} |" in row
    assert "(no bar measured" in text  # batch 1 is not the bar's setting
