#!/usr/bin/env bash
# Depth sweep on CIFAR-10: ResNet / Plain / GloNet x depths x seeds, resumable, then the
# sweep report (test accuracy vs depth, blocks used and early exit, seconds per epoch, the
# authors' numbers beside ours).
#
#   bash resnet_cifar10/train_script.sh               # CPU-sized default: 30-epoch recipe
#   GRID=paper bash resnet_cifar10/train_script.sh    # the authors' 200-epoch recipe (GPU)
#   GRID=recipes bash resnet_cifar10/train_script.sh  # the CPU-recipe search (README)
#   MODELS="GloNet Plain" DEPTHS="20 56" SEEDS="0 1" bash resnet_cifar10/train_script.sh
#
# Variables: GRID, PYTHON, MODELS, DEPTHS, SEEDS, EPOCHS, SWEEP_ROOT, EXTRA_FLAGS (passed to train.py as
# they are, e.g. EXTRA_FLAGS="--data_dir=/data --use_batch_norm=false").
# GloNets deeper than 20 layers diverge at these learning rates unless the gradient is
# clipped: EXTRA_FLAGS="--grad_clip_norm=1" clips every point (resnet_cifar10/README.md).
# Rerun the same command to resume: finished points are skipped, interrupted ones resume.
# The grids are the sweeps of resnet_cifar10/configs/sweeps.py (GRID names one); an unknown
# GRID is refused.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
# The repository's virtual environment when there is one (README), else $PYTHON or python.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
exec "${PYTHON:-python}" -m common.sweep --sweep="resnet_cifar10:${GRID:-cpu}" ${SWEEP_ROOT:+--root="$SWEEP_ROOT"} \
  ${MODELS:+--models="$MODELS"} ${DEPTHS:+--depths="$DEPTHS"} ${SEEDS:+--seeds="$SEEDS"} -- \
  ${EPOCHS:+--epochs="$EPOCHS"} --progress=false ${EXTRA_FLAGS:-}
