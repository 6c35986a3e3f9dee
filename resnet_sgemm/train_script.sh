#!/usr/bin/env bash
# SGEMM depth sweep: GloNet, ResNet-v2 with BN, ResNet-v2 without BN, MLP at depths
# 10..1000, resumable, then the sweep report (test MSE vs depth, blocks used vs depth, and
# the paper's Table 1: seconds per epoch of GloNet vs ResNet and their ratio).
#
#   bash resnet_sgemm/train_script.sh                # CPU-sized default (see README for time)
#   GRID=paper bash resnet_sgemm/train_script.sh     # the paper's setting: 200 epochs (own root)
#   DEPTHS="10 100" SEEDS=0 EPOCHS=5 bash resnet_sgemm/train_script.sh
#
# Variables: MODELS, DEPTHS, SEEDS, EPOCHS, FEATURES, SWEEP_ROOT, EXTRA_FLAGS (passed to
# train.py as they are, e.g. EXTRA_FLAGS="--data_dir=/data"). Rerun the same command to
# resume: points the same command already brought to an outcome (done, or diverged) are
# skipped.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
GRID="${GRID:-cpu}"
case "$GRID" in
  cpu|paper) ;;
  *) echo "error: GRID=$GRID is not a grid of this sweep; use GRID=cpu (the default) or GRID=paper." >&2
     exit 2 ;;
esac
if [ "$GRID" = "paper" ]; then
  : "${EPOCHS:=200}"
fi
exec python -m common.sweep --module=resnet_sgemm.train \
  --root="${SWEEP_ROOT:-sweeps/resnet_sgemm_$GRID}" \
  --models="${MODELS:-GloNet ResNet ResNet:use_batch_norm=false MLP}" \
  --depths="${DEPTHS:-10 24 50 100 200 600 1000}" --seeds="${SEEDS:-0 1 2}" -- \
  --epochs="${EPOCHS:-5}" --features="${FEATURES:-16}" --progress=false ${EXTRA_FLAGS:-}
