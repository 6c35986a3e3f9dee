#!/usr/bin/env bash
# Depth sweep on CIFAR-10: ResNet / Plain / GloNet x depths x seeds, resumable, then the
# sweep report (test accuracy vs depth, blocks used and early exit, seconds per epoch, the
# authors' numbers beside ours).
#
#   bash resnet_cifar10/train_script.sh               # CPU-sized default: 30-epoch recipe
#   GRID=paper bash resnet_cifar10/train_script.sh    # the authors' 200-epoch recipe (GPU)
#   MODELS="GloNet Plain" DEPTHS="20 56" SEEDS="0 1" bash resnet_cifar10/train_script.sh
#
# Variables: MODELS, DEPTHS, SEEDS, EPOCHS, SWEEP_ROOT, EXTRA_FLAGS (passed to train.py as
# they are, e.g. EXTRA_FLAGS="--data_dir=/data --use_batch_norm=false").
# GloNets deeper than 20 layers diverge at these learning rates unless the gradient is
# clipped: EXTRA_FLAGS="--grad_clip_norm=1" clips every point (resnet_cifar10/README.md).
# Rerun the same command to resume: finished points are skipped, interrupted ones resume.
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
RECIPE="--recipe=cpu"
if [ "$GRID" = "paper" ]; then
  : "${DEPTHS:=20 32 44 56 110}" "${SEEDS:=0 1 2}" "${EPOCHS:=200}"
  RECIPE="--recipe=authors"
fi
exec python -m common.sweep --module=resnet_cifar10.train \
  --root="${SWEEP_ROOT:-sweeps/resnet_cifar10_$GRID}" --models="${MODELS:-ResNet Plain GloNet}" \
  --depths="${DEPTHS:-20 56 110}" --seeds="${SEEDS:-0}" -- \
  $RECIPE --epochs="${EPOCHS:-30}" --progress=false ${EXTRA_FLAGS:-}
