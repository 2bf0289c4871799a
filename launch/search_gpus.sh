#!/usr/bin/env bash
# Single host, every local GPU: fdn.search trains one candidate per GPU at once (parallel.workers=0 = every
# local accelerator; fdn.search.parallel), with the agent, log and checkpoints in this one process.
#
#   bash launch/search_gpus.sh --config=configs/voc.py --workdir=runs/voc_search \
#       --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
#
# parallel.lag (candidate i is proposed knowing the rewards of 0..i-1-lag) decides the results, so it is fixed
# per search: this script sets it to the GPU count unless FDN_LAG or your own --config.parallel.lag says
# otherwise (yours comes last and wins); resume with the same value (a different one is refused with one line).
# Environment it honours:
#   CUDA_VISIBLE_DEVICES=0,1        which GPUs to use (default: all)
#   FDN_LAG                         parallel.lag (default: the number of GPUs)
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of each GPU JAX preallocates (JAX default 0.75)
#   FDN_PYTHON                      the interpreter (default: python)
# Run the same command again to resume from WORKDIR/checkpoints. Several hosts: launch/slurm.sbatch,
# launch/tpu_pod.sh, launch/multihost.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  gpus=$(awk -F, '{print NF}' <<<"$CUDA_VISIBLE_DEVICES")
else
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
lag=${FDN_LAG:-$(( gpus > 0 ? gpus : 0 ))}
exec "${FDN_PYTHON:-python}" -m fdn.search --config.parallel.workers=0 --config.parallel.lag="$lag" "$@"
