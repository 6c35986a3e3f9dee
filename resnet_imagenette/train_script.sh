#!/usr/bin/env bash
# Depth sweep on Imagenette: ResNet / Plain / GloNet x depths 18, 34 x seeds, resumable,
# then the sweep report (test accuracy vs depth per family, blocks used and early exit,
# seconds per epoch).
#
#   bash resnet_imagenette/train_script.sh               # CPU recipe: 20 epochs at 128 px
#   GRID=gpu bash resnet_imagenette/train_script.sh      # the longer GPU recipe
#   MODELS="GloNet Plain" SEEDS="0 1" bash resnet_imagenette/train_script.sh
#
# Variables: GRID, PYTHON, MODELS, DEPTHS, SEEDS, EPOCHS, SWEEP_ROOT, EXTRA_FLAGS (passed to train.py as
# they are, e.g. EXTRA_FLAGS="--data_dir=/data --image_size=160").
# Rerun the same command to resume: finished points are skipped, interrupted ones resume.
# The grids are the sweeps of resnet_imagenette/configs/sweeps.py (GRID names one); an unknown
# GRID is refused.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
# The repository's virtual environment when there is one (README), else $PYTHON or python.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
exec "${PYTHON:-python}" -m common.sweep --sweep="resnet_imagenette:${GRID:-cpu}" ${SWEEP_ROOT:+--root="$SWEEP_ROOT"} \
  ${MODELS:+--models="$MODELS"} ${DEPTHS:+--depths="$DEPTHS"} ${SEEDS:+--seeds="$SEEDS"} -- \
  ${EPOCHS:+--epochs="$EPOCHS"} --progress=false ${EXTRA_FLAGS:-}
