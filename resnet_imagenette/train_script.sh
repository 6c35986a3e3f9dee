#!/usr/bin/env bash
# Depth sweep on Imagenette: ResNet / Plain / GloNet x depths 18, 34 x seeds, resumable,
# then the sweep report (test accuracy vs depth per family, blocks used and early exit,
# seconds per epoch).
#
#   bash resnet_imagenette/train_script.sh               # CPU recipe: 20 epochs at 128 px
#   GRID=gpu bash resnet_imagenette/train_script.sh      # the longer GPU recipe
#   MODELS="GloNet Plain" SEEDS="0 1" bash resnet_imagenette/train_script.sh
#
# Variables: MODELS, DEPTHS, SEEDS, EPOCHS, SWEEP_ROOT, EXTRA_FLAGS (passed to train.py as
# they are, e.g. EXTRA_FLAGS="--data_dir=/data --image_size=160").
# Rerun the same command to resume: finished points are skipped, interrupted ones resume.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
GRID="${GRID:-cpu}"
case "$GRID" in
  cpu|gpu) ;;
  *) echo "error: GRID=$GRID is not a grid of this sweep; use GRID=cpu (the default) or GRID=gpu." >&2
     exit 2 ;;
esac
RECIPE="--recipe=cpu"
EPOCH_FLAG=()
if [ "$GRID" = "gpu" ]; then
  RECIPE="--recipe=gpu"
fi
if [ -n "${EPOCHS:-}" ]; then
  EPOCH_FLAG=(--epochs="$EPOCHS")
fi
exec python -m common.sweep --module=resnet_imagenette.train \
  --root="${SWEEP_ROOT:-sweeps/resnet_imagenette_$GRID}" --models="${MODELS:-ResNet Plain GloNet}" \
  --depths="${DEPTHS:-18 34}" --seeds="${SEEDS:-0}" -- \
  $RECIPE "${EPOCH_FLAG[@]}" --progress=false ${EXTRA_FLAGS:-}
