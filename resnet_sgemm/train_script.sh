#!/usr/bin/env bash
# SGEMM depth sweep: GloNet, ResNet-v2 with BN, ResNet-v2 without BN, MLP at depths
# 10..1000, resumable, then the sweep report (test MSE vs depth, blocks used vs depth, and
# the paper's Table 1: seconds per epoch of GloNet vs ResNet and their ratio).
#
#   bash resnet_sgemm/train_script.sh                # CPU-sized default (see README for time)
#   GRID=paper bash resnet_sgemm/train_script.sh     # the paper's setting: 200 epochs (own root)
#   DEPTHS="10 100" SEEDS=0 EPOCHS=5 bash resnet_sgemm/train_script.sh
#
# Variables: GRID, PYTHON, MODELS, DEPTHS, SEEDS, EPOCHS, FEATURES, SWEEP_ROOT, EXTRA_FLAGS (passed to
# train.py as they are, e.g. EXTRA_FLAGS="--data_dir=/data"). Rerun the same command to
# resume: points the same command already brought to an outcome (done, or diverged) are
# skipped.
# The grids are the sweeps of resnet_sgemm/configs/sweeps.py (GRID names one); an unknown
# GRID is refused.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
# The repository's virtual environment when there is one (README), else $PYTHON or python.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
exec "${PYTHON:-python}" -m common.sweep --sweep="resnet_sgemm:${GRID:-cpu}" ${SWEEP_ROOT:+--root="$SWEEP_ROOT"} \
  ${MODELS:+--models="$MODELS"} ${DEPTHS:+--depths="$DEPTHS"} ${SEEDS:+--seeds="$SEEDS"} -- \
  ${EPOCHS:+--epochs="$EPOCHS"} ${FEATURES:+--features="$FEATURES"} --progress=false ${EXTRA_FLAGS:-}
