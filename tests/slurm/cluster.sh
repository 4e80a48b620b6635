#!/usr/bin/env bash
# A throwaway single-node SLURM on this machine, for tests/slurm/run.sh (measured traps: ../../README.md, SLURM).
#   tests/slurm/cluster.sh install        apt-get the Debian packages (root)
#   tests/slurm/cluster.sh up SCRATCH     start munge (unless one answers), slurmctld, slurmd; wait for the node
#   tests/slurm/cluster.sh down SCRATCH   stop what `up` started, by the pids in SCRATCH, and restore /etc/slurm
# One node named after this host, partitions `cpu` (default) and `gpu`, eight fake GPUs (character devices made with
# mknod: SLURM only needs the files to exist, and sets CUDA_VISIBLE_DEVICES per job), no accounting (the workflow's
# slurm profile is then run with `--slurm-status-command squeue`, which needs MinJobAge >= 120).
set -euo pipefail

PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge)
# Enough fake GPUs, declared cores and memory for every GPU job the demo DAG can have ready at once (congruence,
# the experiments' group, the two stages jobs and the two record shards): the test checks that the two record
# shards run side by side on GPUs of their own, which must not depend on which other GPU job SLURM started first.
N_GPUS=${ANNEURON_SLURM_GPUS:-8}

log() { echo "[slurm-cluster] $*" >&2; }

install() {
  [[ $(id -u) == 0 ]] || { log "needs root"; exit 2; }
  local missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Put one of our files at /etc/slurm/NAME (the job step strips SLURM_CONF, so slurm.conf must be found there),
# keeping whatever was there to put back on `down`.
link_etc() {
  local name=$1 scratch=$2
  mkdir -p /etc/slurm "$scratch/etc-backup"
  if [[ -e /etc/slurm/$name || -L /etc/slurm/$name ]]; then mv "/etc/slurm/$name" "$scratch/etc-backup/$name"; fi
  ln -s "$scratch/etc/$name" "/etc/slurm/$name"
}

restore_etc() {
  local scratch=$1 name
  for name in slurm.conf gres.conf; do
    if [[ -L /etc/slurm/$name && $(readlink "/etc/slurm/$name") == "$scratch/etc/$name" ]]; then
      rm "/etc/slurm/$name"
      if [[ -e $scratch/etc-backup/$name || -L $scratch/etc-backup/$name ]]; then
        mv "$scratch/etc-backup/$name" "/etc/slurm/$name"
      fi
    fi
  done
}

start_munge() {
  local scratch=$1
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munge already answers; using it"
    return
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$scratch/run/munged.pid"
}

write_conf() {
  local scratch=$1 host cpus mem dev
  host=$(hostname -s)
  # Declared, not measured (SlurmdParameters=config_overrides): at least 32 CPUs and 512 GB so that every GPU job
  # (2 threads, 16 GB asked each) and the CPU jobs fit side by side on a 2-core machine; memory is not enforced
  # (task/none), so declaring plenty costs nothing.
  cpus=$(( $(nproc) > 32 ? $(nproc) : 32 ))
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
  (( mem < 512000 )) && mem=512000
  dev="$scratch/dev"
  mkdir -p "$dev"
  for ((i = 0; i < N_GPUS; i++)); do [[ -e $dev/nvidia$i ]] || mknod "$dev/nvidia$i" c 1 3; done
  cat >"$scratch/etc/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh for one test run; removed by 'down'.
ClusterName=anneuron-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmdParameters=config_overrides
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
DefMemPerCPU=1000
SlurmctldPidFile=$scratch/run/slurmctld.pid
SlurmdPidFile=$scratch/run/slurmd.pid
SlurmdSpoolDir=$scratch/spool
StateSaveLocation=$scratch/state
SlurmctldLogFile=$scratch/log/slurmctld.log
SlurmdLogFile=$scratch/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:fake:$N_GPUS State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
  echo "NodeName=$host Name=gpu Type=fake File=$dev/nvidia[0-$((N_GPUS - 1))]" >"$scratch/etc/gres.conf"
}

up() {
  local scratch=${1:?scratch dir}
  [[ $(id -u) == 0 ]] || { log "needs root"; exit 2; }
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    log "a slurmctld or slurmd already runs on this machine; not touching it"
    exit 2
  fi
  mkdir -p "$scratch"/{etc,run,spool,state,log}
  write_conf "$scratch"
  link_etc slurm.conf "$scratch"
  link_etc gres.conf "$scratch"
  start_munge "$scratch"
  slurmctld
  slurmd
  local host state=""
  host=$(hostname -s)
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 || true)
    [[ $state == idle* ]] && break
    sleep 0.5
  done
  if [[ $state != idle* ]]; then
    log "node not idle (state '$state'); logs in $scratch/log"
    tail -5 "$scratch"/log/*.log >&2 || true
    exit 1
  fi
  log "up: node $host idle, $(sinfo -h -o '%P %G' | tr '\n' ' ')"
}

stop_pidfile() {
  local f=$1 pid
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# Jobs left over from a failed run: cancel them while controller, slurmd and munge still answer (a slurmstepd whose
# slurmd or munged is gone hangs on), wait until they have left, then kill any job process still listed.
cancel_jobs() {
  local pids
  [[ -n $(squeue -h -o %i 2>/dev/null) ]] || return 0
  scancel --user="$(id -un)" 2>/dev/null || true
  for _ in $(seq 60); do
    [[ -z $(squeue -h -t RUNNING,PENDING,COMPLETING -o %i 2>/dev/null) ]] && break
    sleep 0.5
  done
  pids=$(scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}') || true
  if [[ -n $pids ]]; then
    log "killing job processes left after scancel: $(echo $pids)"
    kill -9 $pids 2>/dev/null || true
  fi
}

down() {
  local scratch=${1:?scratch dir}
  [[ -s $scratch/run/slurmctld.pid ]] && cancel_jobs
  stop_pidfile "$scratch/run/slurmd.pid"
  stop_pidfile "$scratch/run/slurmctld.pid"
  stop_pidfile "$scratch/run/munged.pid"
  restore_etc "$scratch"
  log "down"
}

case ${1:-} in
  install) install ;;
  up) up "${2:-}" ;;
  down) down "${2:-}" ;;
  *) echo "usage: $0 install | up SCRATCH | down SCRATCH" >&2; exit 2 ;;
esac
