#!/usr/bin/env bash
# A real single-node Slurm on this machine's loopback address, for trying the Slurm sweep
# launcher end to end (cluster/slurm_sweep_check.sh) without a cluster.
#
#   bash cluster/local_slurm.sh start    # munged, slurmctld and slurmd; prints the env
#   bash cluster/local_slurm.sh stop
#
# Needs Debian's (or Ubuntu's) packages: apt-get install slurm-wlm (Slurm 22.05 here) and
# root (the daemons run as root, jobs as the calling user). Everything Slurm writes (its
# configuration, state, logs) goes to $SLURM_LOCAL_DIR (default /tmp/glonets-slurm); the
# configuration is passed by SLURM_CONF, so /etc/slurm is never touched. The node is this
# machine (its CPUs and memory as slurmd reports them), partition "local", with
# preemption by requeue so a point can be preempted on purpose (scontrol requeue).
set -euo pipefail
DIR="${SLURM_LOCAL_DIR:-/tmp/glonets-slurm}"
export SLURM_CONF="$DIR/slurm.conf"
cmd="${1:-start}"

stop() {
  for pidfile in "$DIR"/slurmd.pid "$DIR"/slurmctld.pid "$DIR"/munge/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
}

if [ "$cmd" = stop ]; then stop; echo "stopped"; exit 0; fi
if [ "$cmd" != start ]; then echo "error: usage: $0 start|stop" >&2; exit 2; fi
for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found: apt-get install slurm-wlm" >&2; exit 2; }
done
stop
mkdir -p "$DIR"/{state,spool,munge,log}
chown munge: "$DIR"/munge "$DIR"/log; chmod 700 "$DIR"/munge
# munge: a fresh key for this private cluster.
[ -f "$DIR/munge.key" ] || dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge.key" 2>/dev/null
chown munge: "$DIR/munge.key"; chmod 400 "$DIR/munge.key"
runuser -u munge -- munged --key-file="$DIR/munge.key" --socket="$DIR/munge/munge.socket" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" \
  --force
NODE_LINE="$(slurmd -C | head -1) State=UNKNOWN"
NODE="$(echo "$NODE_LINE" | sed 's/^NodeName=\([^ ]*\).*/\1/')"
cat > "$SLURM_CONF" <<CONF
ClusterName=glonets-local
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmdTimeout=60
InactiveLimit=0
KillWait=30
$NODE_LINE NodeAddr=127.0.0.1
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 30); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "Slurm is up: $(sinfo -h -o '%P %D %T %C')"
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "error: the node did not become idle; see $DIR/log/" >&2
exit 1
