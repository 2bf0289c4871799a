#!/usr/bin/env bash
# Single host, every local GPU: fdn.train is data parallel over all devices JAX sees (jax.sharding: batch
# split over a 'data' mesh axis, parameters replicated, BN statistics over the global batch).
#
#   bash launch/gpus.sh --config=configs/voc_train.py --workdir=runs/arch0_voc --config.genotype=arch0 \
#       --config.data.data_dir=/data/tfds --config.encoder.checkpoint=ckpt/mbv2_imagenet
#
# config.data.batch_size is the global batch and must be divisible by the GPU count; the learning rates
# scale linearly with it (config.optim.scale_lr_with_batch). Environment variables it honours:
#   CUDA_VISIBLE_DEVICES=0,1        which GPUs to use (default: all)
#   XLA_PYTHON_CLIENT_MEM_FRACTION  share of GPU memory JAX preallocates (JAX default 0.75)
#   XLA_PYTHON_CLIENT_PREALLOCATE=false   allocate on demand instead (slower, shares the GPU)
#   FDN_PYTHON                      the interpreter (default: python)
# Run the same command again to resume from WORKDIR/checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${FDN_PYTHON:-python}" -m fdn.train "$@"
