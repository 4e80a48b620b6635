#!/usr/bin/env bash
# `make test-slurm`: the demo pipeline through a real single-node SLURM equals a local run of it.
#   1. installs slurm-wlm + munge (Debian packages) and starts a throwaway cluster (tests/slurm/cluster.sh):
#      partitions cpu and gpu, eight fake GPUs, no accounting;
#   2. runs the demo (workflow/configs/demo-planted.yaml + tests/slurm/config.yaml: few documents, 2 record
#      shards, one experiment) twice at the same time, in two scratch copies of the repository: locally with the
#      default profile, and with `--profile workflow/profiles/slurm` (plus the flags a cluster without accounting
#      needs). At the same time because the SLURM run mostly waits (job start-up, status polling);
#   3. checks every job went through SLURM, GPU rules on the gpu partition with one GPU each, two record shards
#      running at the same time, and that the two runs' results are equal (tests/slurm/compare.py);
#   4. stops the daemons it started, by pid, and puts /etc/slurm back.
# Needs root and apt (or the packages already installed). Keep ANNEURON_SLURM_KEEP=1 to keep the scratch folder.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=$REPO/.venv/bin/python
RUN_TIMEOUT=${ANNEURON_SLURM_TIMEOUT:-900}
# Compute jobs run offline (a hub call fails the job, and so the test); the fake GPUs are character devices, so
# GPU jobs are told not to insist on CUDA (anneuron.provenance.require_gpu).
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false ANNEURON_FAKE_GPUS=1

if [[ $(id -u) != 0 ]]; then
  echo "test-slurm: needs root (it installs slurm-wlm and starts slurmctld/slurmd); skipped" >&2
  exit 2
fi

t0=$SECONDS
stamp() { printf '[test-slurm %4ds] %s\n' $((SECONDS - t0)) "$*"; }
timings=()
timed() { # timed LABEL CMD...: run CMD, remember how long it took
  local label=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$label: $((SECONDS - start)) s")
}

SCRATCH=$(mktemp -d /tmp/anneuron-slurm.XXXXXX)
MONITOR_PID=""
LOCAL_PID=""
cleanup() {
  local rc=$?
  [[ -n $MONITOR_PID ]] && kill "$MONITOR_PID" 2>/dev/null || true
  if [[ -n $LOCAL_PID ]]; then # the local run, when the SLURM run failed first: stop it (timeout passes TERM on)
    kill "$LOCAL_PID" 2>/dev/null || true
    wait "$LOCAL_PID" 2>/dev/null || true
  fi
  bash "$REPO/tests/slurm/cluster.sh" down "$SCRATCH/cluster" || true
  if [[ $rc != 0 ]]; then
    echo "test-slurm: FAILED (rc $rc); scratch kept in $SCRATCH" \
      "(logs: */logs, */.snakemake/slurm_logs, cluster/log)" >&2
  elif [[ -z ${ANNEURON_SLURM_KEEP:-} ]]; then
    rm -rf "$SCRATCH"
  else
    echo "test-slurm: scratch kept in $SCRATCH"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy of the sources (not the outputs) with the environment symlinked, so the user's results are never touched.
copy_repo() {
  local dst=$1
  mkdir -p "$dst"
  tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=./results --exclude=./resources --exclude=./logs \
    --exclude=./benchmarks --exclude=./.snakemake --exclude=./report.html --exclude=./report.zip \
    --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$dst" -xf -
  ln -s "$REPO/.venv" "$dst/.venv"
}

# The demo config with tests/slurm/config.yaml on top, and two of its experiments (an_a: the paper check reads it;
# an_picked: so that the experiments' group job holds two jobs), written over the copy's config.yaml. Not
# `--replace-workflow-config --configfile`: Snakemake passes a job step the --configfiles but not that flag, so a
# SLURM job would add the default experiments back and wait for them.
EXPERIMENTS=an_a,an_picked
complete_config() {
  (cd "$1" && "$PY" tests/configs.py config.yaml --experiments "$EXPERIMENTS" \
    workflow/configs/demo-planted.yaml tests/slurm/config.yaml)
}

# The local run, in the background: LOCAL_PID is timeout's pid (exec), so killing it stops Snakemake too.
start_local() {
  LOCAL_START=$SECONDS
  (cd "$SCRATCH/local" && exec timeout -k 10 "$RUN_TIMEOUT" .venv/bin/snakemake \
    --workflow-profile workflow/profiles/default --cores 2 >"$SCRATCH/local.log" 2>&1) &
  LOCAL_PID=$!
}

# Wait for the local run; its duration is that of its log (last written when it finished).
finish_local() {
  local rc=0
  wait "$LOCAL_PID" || rc=$?
  LOCAL_PID=""
  if ((rc)); then
    tail -30 "$SCRATCH/local.log"
    echo "test-slurm: the local run failed (rc $rc)" >&2
    return 1
  fi
  timings+=("demo locally (alongside): $(($(stat -c %Y "$SCRATCH/local.log") - $(date +%s) + SECONDS - LOCAL_START)) s")
}

run_slurm() {
  # Flags for this test cluster only: no accounting (squeue polling), a quick first status check,
  # no retries (a failure should fail the test now, not three times).
  (cd "$SCRATCH/slurm" && timeout -k 10 "$RUN_TIMEOUT" .venv/bin/snakemake --profile workflow/profiles/slurm \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 \
    --slurm-keep-successful-logs --retries 0 --jobs 8 \
    >"$SCRATCH/slurm.log" 2>&1) || { tail -40 "$SCRATCH/slurm.log"; return 1; }
}

# Every second: the jobs SLURM runs (id, partition, state, GPUs asked for, name, comment = Snakemake rule) ->
# queue.log, for the checks after the run. tres-per-job is where `--gpus=1` shows (gres:gpu:1; %b shows N/A).
monitor_queue() {
  while true; do
    squeue -h -O "JobID:|,Partition:|,State:|,tres-per-job:|,Name:|,Comment:" 2>/dev/null |
      awk -v t="$SECONDS" '{print t "|" $0}' >>"$SCRATCH/queue.log" || true
    sleep 1
  done
}

stamp "install packages"
timed "install (apt)" bash "$REPO/tests/slurm/cluster.sh" install
stamp "start cluster"
timed "cluster start" bash "$REPO/tests/slurm/cluster.sh" up "$SCRATCH/cluster"

for copy in local slurm; do
  copy_repo "$SCRATCH/$copy"
  complete_config "$SCRATCH/$copy"
done

stamp "demo through SLURM and locally, at the same time"
monitor_queue &
MONITOR_PID=$!
start_local
timed "demo through SLURM" run_slurm
kill "$MONITOR_PID" 2>/dev/null || true
MONITOR_PID=""
stamp "SLURM run done; waiting for the local run"
finish_local

stamp "compare"
timed "checks" "$PY" "$REPO/tests/slurm/compare.py" --local "$SCRATCH/local" --slurm "$SCRATCH/slurm" \
  --queue-log "$SCRATCH/queue.log" --slurm-log "$SCRATCH/slurm.log"

stamp "passed"
printf '  %s\n' "${timings[@]}" "total: $((SECONDS - t0)) s"
