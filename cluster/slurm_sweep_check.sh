#!/usr/bin/env bash
# End-to-end check of the Slurm sweep launcher on a real single-node Slurm
# (cluster/local_slurm.sh): a small MNIST sweep submitted as a job array, one running
# point requeued mid-run as a preemption would (SIGTERM, then requeued by Slurm), the
# sweep report rendered while points still run and again at the end.
#
#   bash cluster/local_slurm.sh start && export SLURM_CONF=/tmp/glonets-slurm/slurm.conf
#   GLONETS_DATA_DIR=/path/to/data bash cluster/slurm_sweep_check.sh [ROOT]
#
# Exit status 0 when every point ends `done` and the requeued point was resumed (its
# config.json records a resume), 1 otherwise. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(realpath -m "${1:-/tmp/glonets-slurm-sweep}")"
PY="${PYTHON:-python}"
rm -rf "$ROOT"
: "${GLONETS_DATA_DIR:?set GLONETS_DATA_DIR to a data root holding mnist/}"
job=$(LAUNCHER=slurm CPUS_PER_POINT=1 "$PY" -m common.sweep --module=linear_mnist.train \
  --root="$ROOT" --models="GloNet MLP" --depths=6 --seeds="0 1" -- \
  --features=64 --epochs=12 --batch_size=64 --progress=false --tensorboard=false)
echo "submitted job array $job (4 points; 2 run at a time on 2 cores)"
# Wait for a point that has finished an epoch (a checkpoint exists), then requeue it.
victim=""
for _ in $(seq 1 600); do
  for task in $(squeue -h -j "$job" -t RUNNING -o %K 2>/dev/null); do
    dir=$(sed -n "$((task + 1))p" <<< "GloNet/depth_6/seed_0
GloNet/depth_6/seed_1
MLP/depth_6/seed_0
MLP/depth_6/seed_1")
    if [ -d "$ROOT/$dir/checkpoints/2" ]; then victim="$task"; break 2; fi
  done
  sleep 0.5
done
[ -n "$victim" ] || { echo "error: no running point reached epoch 2" >&2; exit 1; }
echo "requeueing task $victim ($dir) mid-run, as a preemption would"
scontrol requeue "${job}_${victim}"
sleep 15
echo "--- sweep report while points still run:"
"$PY" -m common.report --sweep "$ROOT" 2>/dev/null | tail -n 3
while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do sleep 2; done
echo "--- all tasks left the queue; statuses:"
ok=0
for d in GloNet/depth_6/seed_0 GloNet/depth_6/seed_1 MLP/depth_6/seed_0 MLP/depth_6/seed_1; do
  status=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" \
    "$ROOT/$d/status.json")
  resumes=$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1])).get('resumes', [])))" \
    "$ROOT/$d/config.json")
  echo "$d: $status, resumed $resumes time(s)"
  [ "$status" = done ] || ok=1
  if [ "$d" = "$dir" ] && [ "$resumes" -lt 1 ]; then ok=1; fi
done
grep -h "interrupted by" "$ROOT"/logs/*.log | head -n 2 || true
"$PY" -m common.report --sweep "$ROOT" 2>/dev/null | tail -n 3
exit $ok
