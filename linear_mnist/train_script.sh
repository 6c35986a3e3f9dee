#!/usr/bin/env bash
# Depth sweep on MNIST: models x depths x seeds, resumable, then the sweep report.
#
#   bash linear_mnist/train_script.sh                 # CPU-sized default (about 50 min on 2 cores; see the README)
#   GRID=paper bash linear_mnist/train_script.sh      # paper-sized grid (own root)
#   MODELS="GloNet MLP" DEPTHS="10 100" SEEDS="0 1" EPOCHS=5 bash linear_mnist/train_script.sh
#
# Variables: GRID, PYTHON, MODELS, DEPTHS, SEEDS, EPOCHS, FEATURES, SWEEP_ROOT, EXTRA_FLAGS (passed to
# train.py as they are, e.g. EXTRA_FLAGS="--data_dir=/data --learning_rate=3e-4").
# Rerun the same command to resume: points the same command already brought to an outcome
# (done, or diverged) are skipped.
# The grids are the sweeps of linear_mnist/configs/sweeps.py (GRID names one); an unknown
# GRID is refused.
# On a Slurm cluster: LAUNCHER=slurm (with PARTITION, TIME_LIMIT, GPUS_PER_POINT,
# CPUS_PER_POINT) submits the grid as a job array, one requeueable task per point.
set -euo pipefail
cd "$(dirname "$0")/.."
# The repository's virtual environment when there is one (README), else $PYTHON or python.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
exec "${PYTHON:-python}" -m common.sweep --sweep="linear_mnist:${GRID:-cpu}" ${SWEEP_ROOT:+--root="$SWEEP_ROOT"} \
  ${MODELS:+--models="$MODELS"} ${DEPTHS:+--depths="$DEPTHS"} ${SEEDS:+--seeds="$SEEDS"} -- \
  ${EPOCHS:+--epochs="$EPOCHS"} ${FEATURES:+--features="$FEATURES"} --progress=false ${EXTRA_FLAGS:-}
