"""``fdn.bench stage1`` itself: a tiny run prints its settings and XLA's count of the compiled step."""

import json

import jax

from fdn.bench import __main__ as bench_main
from fdn.bench import _profile
from fdn.bench import stage1 as bench_stage1


def test_step_table_names_its_settings_xla_cost_and_profile(capsys, tmp_path):
    """A tiny run of the bench itself (per-genotype programs: the cheaper compile): the settings it measured,
    XLA's count of the compiled step (rates but no peak fractions on a CPU) and, traced, where the time went."""
    argv = ["fdn.bench", "stage1", "--batch=1", "--crop=32", "--steps=1", "--warmup=0", "--programs=per_genotype"]
    try:
        code = bench_main.main([*argv, f"--profile_dir={tmp_path}", "--profile_steps=2"])
    finally:
        bench_stage1.FLAGS.unparse_flags()
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    want_depthwise = "shifted" if jax.default_backend() == "cpu" else "xla"
    assert code == 0 and result["precision"] == "float32" and result["depthwise"] == want_depthwise
    assert result["flops_per_step"] > 0 and result["bytes_per_step"] > 0 and result["gbps"] > 0
    assert (result["of_hbm_peak"] is None) == (jax.default_backend() == "cpu")
    assert any(line.startswith("XLA GFLOP / GB per step") for line in lines)
    kinds = result["profile_ms"]
    assert sum(kinds.values()) > 0 and {"fwd conv", "bwd conv"} <= set(kinds)
    assert (tmp_path / "step.hlo.txt").exists() and list(tmp_path.glob("**/*.xplane.pb"))
    assert any(line.startswith("profile: ") for line in lines)


def test_profile_counts_exclusive_time_and_names_the_work():
    events = [(0, 100, "while.1"), (10, 40, "conv.2"), (50, 60, "add.3"), (200, 230, "conv.2")]
    assert _profile._exclusive(events) == {"while.1": 60, "conv.2": 60, "add.3": 10}
    assert {_profile._instruction_name(n) for n in ("fusion.12", "%fusion.12", "%fusion.12 = f32[2] add(...)")} == {
        "fusion.12"
    }
    assert _profile.category("jit(step)/transpose(jvp(Decoder))/cells_0/conv_general_dilated") == "bwd conv"
    assert _profile.category("jit(step)/jvp(Decoder)/cells_0/op/sep_dw/mul") == "fwd depthwise conv"
    assert _profile.category("jit(step)/jvp(Decoder)/merge/max") == "fwd elementwise"
    assert _profile.format_profile({}, {})[0].startswith("profile: no event")
    hlo = '  %conv.2 = f32[1,8,8,4]{3,2,1,0} convolution(%a, %b), metadata={op_name="jit(f)/conv_general_dilated"}'
    assert _profile.hlo_instructions(hlo) == {"conv.2": ("f32[1,8,8,4]{3,2,1,0}", "jit(f)/conv_general_dilated")}
