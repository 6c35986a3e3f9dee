#!/usr/bin/env bash
# Recipe variants of resnet_cifar10.train side by side, then one table of what each reached.
# Each line of GRID is a run name and its flags; JOBS of them run at once. On one GPU,
# several CIFAR-sized runs at once fill it far better than one (six ResNet20 runs took 7.3 s
# per epoch each on an H200); on a 2-core CPU keep JOBS=1.
#
#   bash resnet_cifar10/recipe_grid.sh                       # the grid below, one at a time
#   JOBS=6 ROOT=/tmp/grid EXTRA_FLAGS="--data_dir=/data" bash resnet_cifar10/recipe_grid.sh
#   GRID="lr02 --model=ResNet20 --learning_rate=0.2" bash resnet_cifar10/recipe_grid.sh
#
# Rerun the same command to resume: finished runs are skipped, interrupted ones resume.
# The table alone: python -m common.report --table=ROOT
set -euo pipefail
cd "$(dirname "$0")/.."
export ROOT="${ROOT:-sweeps/resnet_cifar10_recipes}" EXTRA_FLAGS="${EXTRA_FLAGS:-}"
# The default grid: one knob at a time away from the CPU recipe (resnet_cifar10/README.md).
GRID="${GRID:-
R20_wd5e-4 --model=ResNet20 --weight_decay=5e-4
R20_wd2e-4 --model=ResNet20 --weight_decay=2e-4
R20_wd1e-4 --model=ResNet20 --weight_decay=1e-4
R20_wd1e-3 --model=ResNet20 --weight_decay=1e-3
R20_wd2e-4_ls --model=ResNet20 --weight_decay=2e-4 --label_smoothing=0.1
R20_ls0.1 --model=ResNet20 --label_smoothing=0.1
R20_lr0.05 --model=ResNet20 --learning_rate=0.05
R20_lr0.2 --model=ResNet20 --learning_rate=0.2
R20_b64 --model=ResNet20 --batch_size=64
G20_wd2e-4 --model=GloNet20 --weight_decay=2e-4
G20_wd1e-4 --model=GloNet20 --weight_decay=1e-4
G20_wd1e-3 --model=GloNet20 --weight_decay=1e-3}"
mkdir -p "$ROOT"
# shellcheck disable=SC2016  # $0, $@, $ROOT and $EXTRA_FLAGS expand in the child bash
printf '%s\n' "$GRID" | grep -v '^[[:space:]]*$' | xargs -P "${JOBS:-1}" -L 1 bash -c '
  if python -m resnet_cifar10.train --workdir="$ROOT/$0" --progress=false $EXTRA_FLAGS "$@" \
      > "$ROOT/$0.log" 2>&1; then echo "$0: done"; else echo "$0: failed, see $ROOT/$0.log"; fi'
python -m common.report --table="$ROOT"
