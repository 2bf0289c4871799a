"""``fdn.bench stage1`` itself: a tiny run prints its settings and XLA's count of the compiled step."""

import json

import jax

from fdn.bench import __main__ as bench_main
from fdn.bench import stage1 as bench_stage1


def test_step_table_names_its_settings_and_xla_cost(capsys):
    """A tiny run of the bench itself (per-genotype programs: the cheaper compile): the settings it measured and
    XLA's count of the compiled step, with rates but no peak fractions on a CPU."""
    try:
        code = bench_main.main(
            ["fdn.bench", "stage1", "--batch=1", "--crop=32", "--steps=1", "--warmup=0", "--programs=per_genotype"]
        )
    finally:
        bench_stage1.FLAGS.unparse_flags()
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    want_depthwise = "shifted" if jax.default_backend() == "cpu" else "xla"
    assert code == 0 and result["precision"] == "float32" and result["depthwise"] == want_depthwise
    assert result["flops_per_step"] > 0 and result["bytes_per_step"] > 0 and result["gbps"] > 0
    assert (result["of_hbm_peak"] is None) == (jax.default_backend() == "cpu")
    assert any(line.startswith("XLA GFLOP / GB per step") for line in lines)
