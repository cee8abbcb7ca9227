# Why: the Slurm tests need a real Slurm, not fakes that `exec "$@"`. Sourced by tests/slurm/*.sh, this
# starts a private one-node cluster on this machine (Debian's slurm-wlm + munge, no systemd, no cgroups):
# its own munged on its own socket, slurmctld and slurmd on free ports, all state, spool, logs and pid
# files under one temporary folder, so that several of these clusters can run side by side. The daemons
# are stopped by their pids when the sourcing shell exits.
#
# Usage (in a test script):  . tests/slurm/slurm_env.sh; slurm_start DIR
#   then sbatch/srun/scontrol/scancel talk to it (SLURM_CONF is exported); slurm_wait_job ID [SECONDS]
#   waits until a job has left the queue and prints its final state (from the job completion log).
# Requeued jobs start again only once the job credential has expired (AuthInfo=cred_expire, 120 s by
# default): the config sets it low, so a requeued job restarts within seconds.

SLURM_ENV_PIDS=()

slurm_stop() {
  local p
  for p in "${SLURM_ENV_PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  for p in "${SLURM_ENV_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2> /dev/null || true
  done
  SLURM_ENV_PIDS=()
}

# The pid in FILE, waiting up to 10 s for the daemon to write it.
slurm_pid_of() {
  for _ in $(seq 1 100); do
    [ -s "$1" ] && { cat "$1"; return 0; }
    sleep 0.1
  done
  echo "slurm_env: no pid file $1" >&2
  return 1
}

slurm_start() {
  local dir=$1
  if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/setup.sh" > /dev/null || return 1
  fi
  [ "$(id -u)" -eq 0 ] || { echo "slurm_env: the local Slurm runs its daemons as root" >&2; return 1; }
  mkdir -p "$dir" && dir=$(realpath "$dir")
  chmod 755 "$dir"
  SLURM_ENV_DIR=$dir
  trap slurm_stop EXIT

  # munge: a fresh key, its own socket; munged runs as the munge user (and wants /run/munge).
  mkdir -p /run/munge "$dir/munge"
  chown munge: /run/munge "$dir/munge" && chmod 755 "$dir/munge"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown munge: "$dir/munge/munge.key" && chmod 400 "$dir/munge/munge.key"
  local sock=$dir/munge/munge.socket
  runuser -u munge -- munged --force --socket="$sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" ||
    { echo "slurm_env: munged did not start: $(tail -3 "$dir/munge/munged.log")" >&2; return 1; }
  SLURM_ENV_PIDS+=("$(slurm_pid_of "$dir/munge/munged.pid")")

  # Two free ports from the kernel's ephemeral range, different per cluster.
  local base=$((20000 + ($$ * 7 + RANDOM) % 20000))
  local cpus mpi=none host
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone follows OMP_NUM_THREADS
  host=$(hostname -s)
  [ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/mpi_pmix.so ] && mpi=pmix
  # TmpFS: srun --mpi=pmix's per-step folders, named by job id, must not meet another cluster's.
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/tmp"
  cat > "$dir/slurm.conf" << EOF
ClusterName=mt$$
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=$mpi
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
MinJobAge=600
KillWait=20
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" || { echo "slurm_env: slurmctld did not start: $(tail -3 "$dir/log/slurmctld.log")" >&2; return 1; }
  SLURM_ENV_PIDS+=("$(slurm_pid_of "$dir/slurmctld.pid")")
  slurmd -f "$SLURM_CONF" || { echo "slurm_env: slurmd did not start: $(tail -3 "$dir/log/slurmd.log")" >&2; return 1; }
  SLURM_ENV_PIDS+=("$(slurm_pid_of "$dir/slurmd.pid")")
  # slurmd stops its slurmstepds' jobs with it; stop it first, munged last.
  SLURM_ENV_PIDS=("${SLURM_ENV_PIDS[2]}" "${SLURM_ENV_PIDS[1]}" "${SLURM_ENV_PIDS[0]}")
  local state
  for _ in $(seq 1 200); do
    state=$(sinfo -h -N -o %T 2> /dev/null || true)
    [ "$state" = idle ] && { SLURM_MPI=$mpi; export SLURM_MPI; return 0; }
    sleep 0.1
  done
  echo "slurm_env: the node is not idle after 20 s (state '$state'): $(tail -3 "$dir/log/slurmctld.log")" >&2
  return 1
}

# Waits (default 120 s) until job ID has left the queue (all of an array's tasks), then prints the
# final JobState of each of its records in the completion log, in order (one per line).
slurm_wait_job() {
  local id=$1 limit=${2:-120}
  for _ in $(seq 1 $((limit * 5))); do
    if [ -z "$(squeue -h -j "$id" -o %i 2> /dev/null)" ]; then
      grep -E "JobId=${id}( |_)" "$SLURM_ENV_DIR/log/jobcomp.txt" 2> /dev/null | sed 's/.* JobState=\([A-Z_]*\).*/\1/'
      return 0
    fi
    sleep 0.2
  done
  echo "slurm_env: job $id still queued after $limit s: $(squeue -j "$id" 2>&1 | tail -1)" >&2
  return 1
}
