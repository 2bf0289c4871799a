#!/usr/bin/env bash
# Multi-host (TPU pod slices, GPU clusters under Slurm / Open MPI / Kubernetes): run THIS SAME command on every
# host, for training (the default, or `train` as first argument) or for the search (`search`).
# --distributed starts jax.distributed before any device is used (fdn.distributed.runtime); with no
# coordinator flags JAX detects the coordinator, process count and index from the environment (Cloud TPU
# metadata, SLURM_*, OMPI_*, Kubernetes).
#
# train: each host reads its own slice of the data (grain: records[process_index::process_count]) and feeds its
#   local devices; config.data.batch_size is the global batch (divisible by the total device count). Process 0
#   writes metrics and exported models; every process takes part in the Orbax checkpoints.
# search: process 0 runs the agent, log, checkpoints and report; every process trains candidates on its local
#   devices (fdn.search.parallel.remote). Set --config.parallel.lag to the total device count (it decides the
#   results; resume with the same value). A process silent for --heartbeat_timeout_s (default 60) stops the
#   run with one line naming it.
# Either way WORKDIR must be on storage all hosts see (GCS bucket, NFS); run the same command again to resume.
#
# Cloud TPU (from your workstation; launch/tpu_pod.sh wraps this):
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd fdn && \
#       bash launch/multihost.sh --config=configs/voc_train.py --workdir=gs://bucket/arch0_voc \
#       --config.data.data_dir=gs://bucket/tfds --config.data.batch_size=64"
# Slurm: ONE TASK PER GPU (JAX's Slurm detection gives each task only GPU number SLURM_LOCALID, so one task per
# node would train on GPU 0 alone; launch/slurm.sbatch wraps this):
#   srun --nodes=4 --ntasks-per-node=8 --gpus-per-node=8 --kill-on-bad-exit=1 \
#       bash launch/multihost.sh --config=configs/voc_train.py --workdir=/shared/run
#   or one task per node that names its GPUs:
#   JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7 srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 \
#       --kill-on-bad-exit=1 bash launch/multihost.sh --config=configs/voc_train.py --workdir=/shared/run
# Elsewhere, say it explicitly (no auto-detection), on host k of N:
#   bash launch/multihost.sh search --coordinator_address=host0:1234 --num_processes=N --process_id=k \
#       --local_device_ids=0,1,2,3 --config=configs/voc.py --workdir=/shared/search --config.parallel.lag=16
#
# Status: the search across 2 processes (localhost, CPU) and its kill / resume are tested
# (tests/test_distributed_search.py); multi-host training and real clusters are not tested here.
set -euo pipefail
cd "$(dirname "$0")/.."
command=train
if [[ "${1:-}" == search || "${1:-}" == train ]]; then
  command=$1
  shift
fi
exec "${FDN_PYTHON:-python}" -m "fdn.$command" --distributed "$@"
