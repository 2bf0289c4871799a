#!/usr/bin/env bash
# Single host, every local GPU.
#
# Training: fdn.train is data parallel over all devices JAX sees (jax.sharding: batch split over a 'data' mesh
# axis, parameters replicated, BN statistics over the global batch).
#
#   bash launch/gpus.sh --config=configs/voc_train.py --workdir=runs/arch0_voc --config.genotype=arch0 \
#       --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
#
# config.data.batch_size is the global batch and must be divisible by the GPU count; the learning rates
# scale linearly with it (config.optim.scale_lr_with_batch).
#
# Search: with `search` first, fdn.search trains one candidate per GPU at once (fdn.search.parallel: a worker
# thread per GPU, each with its own trainer; parallel.workers=0 means every GPU). Results depend on the seed
# and config.parallel.lag only, so give a lag of at least the GPU count and keep it when resuming; the worker
# count may change between sessions.
#
#   bash launch/gpus.sh search --config=configs/voc.py --workdir=runs/search_voc --config.parallel.lag=8 \
#       --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
#
# Set --config.candidate.compilation_cache_dir (configs/voc.py does) so that one GPU compiles each program
# and the others load it. Environment variables it honours:
#   CUDA_VISIBLE_DEVICES=0,1        which GPUs to use (default: all)
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX preallocates (JAX default 0.75)
#   XLA_PYTHON_CLIENT_PREALLOCATE=false   allocate on demand instead (slower, shares the GPU)
#   FDN_PYTHON                      the interpreter (default: python)
# Run the same command again to resume from WORKDIR/checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "search" ]]; then
  shift
  exec "${FDN_PYTHON:-python}" -m fdn.search "$@"
fi
exec "${FDN_PYTHON:-python}" -m fdn.train "$@"
