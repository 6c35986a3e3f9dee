#!/usr/bin/env bash
# Depth sweep on MNIST: models x depths x seeds, resumable, then the sweep report.
#
#   bash linear_mnist/train_script.sh                 # CPU-sized default (about 40 min on 2 cores)
#   GRID=paper bash linear_mnist/train_script.sh      # paper-sized grid
#   MODELS="GloNet MLP" DEPTHS="10 100" SEEDS="0 1" EPOCHS=5 bash linear_mnist/train_script.sh
#
# Variables: MODELS, DEPTHS, SEEDS, EPOCHS, FEATURES, SWEEP_ROOT, EXTRA_FLAGS (passed to
# train.py as they are, e.g. EXTRA_FLAGS="--data_dir=/data --learning_rate=3e-4").
# Points already done are skipped and interrupted ones resume: rerun the same command.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${GRID:-cpu}" = "paper" ]; then
  # The depths of the paper's MNIST figure (5..200 layers), three seeds, longer training.
  : "${DEPTHS:=6 10 20 40 60 80 100 200}" "${SEEDS:=0 1 2}" "${EPOCHS:=20}"
fi
MODELS="${MODELS:-GloNet MLP ResNet}"
DEPTHS="${DEPTHS:-6 10 24 50 100 200}"
SEEDS="${SEEDS:-0}"
EPOCHS="${EPOCHS:-10}"
FEATURES="${FEATURES:-256}"
SWEEP_ROOT="${SWEEP_ROOT:-sweeps/linear_mnist}"

csv() { echo "$*" | tr -s ' ' ','; }
exec python -m common.sweep --module=linear_mnist.train --root="$SWEEP_ROOT" \
  --models="$(csv $MODELS)" --depths="$(csv $DEPTHS)" --seeds="$(csv $SEEDS)" -- \
  --epochs="$EPOCHS" --features="$FEATURES" --progress=false ${EXTRA_FLAGS:-}
