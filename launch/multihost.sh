#!/usr/bin/env bash
# Multi-host (TPU pod slices, GPU clusters under Slurm / Open MPI / Kubernetes): run THIS SAME command on every
# host. --distributed makes fdn.train call jax.distributed.initialize() before touching any device; with no
# arguments JAX detects the coordinator, process count and index from the environment (Cloud TPU metadata,
# SLURM_*, OMPI_*, Kubernetes). Each host reads its own slice of the data (grain pipeline:
# records[process_index::process_count]) and feeds its local devices; config.data.batch_size is the global
# batch (divisible by the total device count). Process 0 writes metrics and exported models; every process
# takes part in the Orbax checkpoints, so WORKDIR must be on storage all hosts see (GCS bucket, NFS).
#
# Cloud TPU (from your workstation):
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd fdn && \
#       bash launch/multihost.sh --config=configs/voc_train.py --workdir=gs://bucket/arch0_voc \
#       --config.data.data_dir=gs://bucket/tfds --config.data.batch_size=64"
# Slurm (one task per host):
#   srun --nodes=4 --ntasks-per-node=1 bash launch/multihost.sh --config=configs/voc_train.py --workdir=/shared/run
# Elsewhere, say it explicitly (no auto-detection), on host k of N:
#   bash launch/multihost.sh --coordinator_address=host0:1234 --num_processes=N --process_id=k --config=...
#
# Status: single-process runs and multi-device sharding are tested on CPU; multi-host runs are not tested here.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${FDN_PYTHON:-python}" -m fdn.train --distributed "$@"
