#!/usr/bin/env bash
# Depth sweep on MNIST: models x depths x seeds, resumable, then the sweep report.
#
#   bash linear_mnist/train_script.sh                 # CPU-sized default (about 50 min on 2 cores; see the README)
#   GRID=paper bash linear_mnist/train_script.sh      # paper-sized grid (own root)
#   MODELS="GloNet MLP" DEPTHS="10 100" SEEDS="0 1" EPOCHS=5 bash linear_mnist/train_script.sh
#
# Variables: MODELS, DEPTHS, SEEDS, EPOCHS, FEATURES, SWEEP_ROOT, EXTRA_FLAGS (passed to
# train.py as they are, e.g. EXTRA_FLAGS="--data_dir=/data --learning_rate=3e-4").
# Rerun the same command to resume: points the same command already brought to an outcome
# (done, or diverged) are skipped.
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
  # The depths of the paper's MNIST figure (5..200 layers), three seeds, longer training.
  : "${DEPTHS:=6 10 20 40 60 80 100 200}" "${SEEDS:=0 1 2}" "${EPOCHS:=20}"
fi
exec python -m common.sweep --module=linear_mnist.train \
  --root="${SWEEP_ROOT:-sweeps/linear_mnist_$GRID}" --models="${MODELS:-GloNet MLP ResNet}" \
  --depths="${DEPTHS:-6 10 24 50 100 200}" --seeds="${SEEDS:-0}" -- \
  --epochs="${EPOCHS:-10}" --features="${FEATURES:-256}" --progress=false ${EXTRA_FLAGS:-}
