#!/usr/bin/env bash
# A Cloud TPU VM pod slice (v4-16, v5e-16, ...: several hosts), from your workstation, for the search or for
# training. It runs the same command on every worker of the slice; JAX finds the coordinator (worker 0), the
# process count and each worker's index in the TPU VM metadata (--distributed without coordinator flags).
#
#   TPU=my-slice ZONE=us-central2-b bash launch/tpu_pod.sh search --config=configs/voc.py \
#       --workdir=gs://bucket/runs/voc_search --config.data.data_dir=gs://bucket/tfds
#   TPU=my-slice ZONE=us-central2-b bash launch/tpu_pod.sh train --config=configs/voc_train.py \
#       --workdir=gs://bucket/runs/arch0 --config.genotype=arch0 --config.data.data_dir=gs://bucket/tfds
#
# Expects: gcloud logged in, the slice up, fdn installed on every worker in ~/fdn (FDN_DIR) with
# jax[tpu] (e.g. `gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd ~/fdn && pip
# install -e . 'jax[tpu]'"`), the workdir and data on storage every worker sees (a GCS bucket, a shared
# disk). search: worker 0 (process 0) runs the agent, log, checkpoints and report; every worker trains
# candidates on its chips (one per chip); FDN_LAG is required for it: parallel.lag decides the results, so
# set it to the slice's total chip count (e.g. 16 for a v5e-16) and resume with the same value. train: data
# parallel over every chip. A worker that dies stops the search within --heartbeat_timeout_s (default 60 s)
# with one line naming it; run the same command again to resume.
# Environment: TPU, ZONE (required), FDN_LAG (search), PROJECT, FDN_DIR (default: ~/fdn), FDN_PYTHON.
set -euo pipefail
command=${1:?usage: TPU=... ZONE=... bash launch/tpu_pod.sh search|train FLAGS...}
shift
: "${TPU:?set TPU to the slice name}" "${ZONE:?set ZONE to its zone}"
case "$command" in
  search) extra="--config.parallel.workers=0 --config.parallel.lag=${FDN_LAG:?set FDN_LAG to the total chip count of the slice}" ;;
  train) extra="" ;;
  *) echo "tpu_pod.sh: error: the first argument is search or train, not '$command'" >&2; exit 2 ;;
esac
remote="cd ${FDN_DIR:-~/fdn} && ${FDN_PYTHON:-python3} -m fdn.$command --distributed $extra $(printf '%q ' "$@")"
exec gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} --worker=all \
  --command="$remote"
