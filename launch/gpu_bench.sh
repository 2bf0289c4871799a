#!/usr/bin/env bash
# Every GPU figure issue #12 asks for, in one run on one H100/H200 within a time budget (default 470 s):
#
#   bash launch/gpu_bench.sh [OUTDIR]
#
# What it runs, in order of importance (a step whose time limit no longer fits the budget is skipped and
# recorded as skipped, so the run always ends on time): the paper preset's whole candidates (`fdn.bench search`:
# seconds per phase, per candidate, candidates per GPU-hour, XLA's FLOPs/bytes per program against the device's
# peak); the stage-1 step at the paper's batch 64 with per-genotype and with universal programs, each traced with
# jax.profiler (the time per kind of work printed, the trace and the optimised HLO kept); then per-genotype with
# fdn's shifted depthwise kernels instead of cuDNN's, in bfloat16, and universal with XLA's conditionals and loops
# in CUDA graphs. Each bench's log goes to OUTDIR (default: $OUT where set, else gpu_bench_out), its JSON line to
# OUTDIR/results.jsonl; OUTDIR/versions.txt names the machine, the driver and the packages; last,
# OUTDIR/gpu_table.md holds the figures as the README's Markdown with issue #12's bars judged.
#
# On a machine without internet that lacks some of fdn's dependencies, put their wheels in .whl/ first
# (`bash launch/gpu_wheels.sh` on a machine with pip's index); they are installed into a private folder.
# FDN_GPU_BENCH_BUDGET (seconds) and FDN_GPU_BENCH_SMOKE=1 (tiny sizes: checks the script on a CPU in minutes)
# change the run; tests/test_launch_gpu_bench.py checks that every bench command below parses.
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_bench_out}}
mkdir -p "$out"
budget=${FDN_GPU_BENCH_BUDGET:-470}
start=$SECONDS

# wheels only where fdn's dependencies are missing (this machine's own packages win elsewhere)
if compgen -G ".whl/*.whl" > /dev/null && ! python3 -c 'import ml_collections, grain, tensorflow_datasets' 2> /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fdn_site \
    .whl/*.whl || { echo "gpu_bench: installing .whl/*.whl failed" >&2; exit 2; }
  export PYTHONPATH=/tmp/fdn_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

if [[ ${FDN_GPU_BENCH_SMOKE:-0} == 1 ]]; then  # the same steps at sizes a CPU runs in minutes
  preset=(--preset=tiny --steps_scale=0.01 --candidates=1 --data=synthetic)
  stage1=(--batch=1 --crop=32 --steps=2 --warmup=1)
else
  preset=(--preset=paper --steps_scale=0.05 --candidates=2)
  stage1=(--batch=64 --crop=256 --steps=20 --warmup=2)
fi

# step NAME LIMIT_SECONDS COMMAND...: run COMMAND if LIMIT still fits the budget; keep its log and JSON line.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - start)))
  if ((limit > left)); then
    echo "== $name: skipped ($limit s limit, $left s of the budget left)" | tee -a "$out/summary.txt"
    echo "{\"step\": \"$name\", \"skipped\": true}" >> "$out/results.jsonl"
    return
  fi
  echo "== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$out/$name.log"
  local last
  last=$(tail -n 1 "$out/$name.log")
  if [[ $rc == 0 && $last == "{"* ]]; then
    echo "{\"step\": \"$name\", \"result\": $last}" >> "$out/results.jsonl"
  else
    echo "{\"step\": \"$name\", \"exit\": $rc}" >> "$out/results.jsonl"
  fi
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
}

{
  date -u
  nvidia-smi -L 2> /dev/null || echo "no nvidia-smi"
  python3 -c 'import sys, jax, flax, optax; print(sys.version.split()[0], "jax", jax.__version__, "flax",
flax.__version__, "optax", optax.__version__, jax.devices())'
  git log --oneline -1 2> /dev/null
} > "$out/versions.txt" 2>&1
cat "$out/versions.txt"
python3 -c 'import fdn.bench.search, fdn.bench._search_data, fdn.bench.stage1' || { echo "gpu_bench: fdn does not import (see above)" >&2; exit 2; }

step search_paper 230 python3 -m fdn.bench search "${preset[@]}"
step stage1_per_genotype 80 python3 -m fdn.bench stage1 "${stage1[@]}" --programs=per_genotype --profile_dir="$out/profile_per_genotype"
step stage1_universal 110 python3 -m fdn.bench stage1 "${stage1[@]}" --programs=universal --profile_dir="$out/profile_universal"
step stage1_per_genotype_shifted 70 env FDN_DEPTHWISE_IMPL=shifted python3 -m fdn.bench stage1 "${stage1[@]}" --programs=per_genotype
step stage1_per_genotype_bf16 70 python3 -m fdn.bench stage1 "${stage1[@]}" --programs=per_genotype --precision=bfloat16
# the interpreter's lax.switch/while on the device: CUDA-graph conditionals instead of a host round trip each
step stage1_universal_graphs 110 env XLA_FLAGS=--xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE python3 -m fdn.bench stage1 "${stage1[@]}" --programs=universal
# the figures as the README's Markdown, judged against #12's bars: paste OUTDIR/gpu_table.md into the README
python3 -m fdn.bench._gpu_table "$out" > "$out/gpu_table.md" && cat "$out/gpu_table.md"
echo "gpu_bench: done in $((SECONDS - start)) s; results in $out/results.jsonl, README table in $out/gpu_table.md"
