# Why: a hung rank must end the job, under mpirun and under a real srun (tests/slurm/slurm_env.sh): one
# rank of two is stopped (SIGSTOP), the other rank's watchdog (train.watchdog_s = 3) prints a line naming
# its rank and last step and exits, and the launcher ends the stopped rank; the time to abort is
# printed. And srun with several tasks but no PMI (--mpi=none) gives one line naming the fix.
# Usage: slurm_watchdog.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"
. tests/slurm/slurm_env.sh
. tests/slurm/common.sh
slurm_test_begin
LIMIT=3

# The pid of the rank (environment VAR=1) of the run writing to folder OUT.
rank1_pid() {
  local out=$1 var=$2 p
  for p in $(pgrep -x moetrain || true); do
    tr '\0' ' ' < "/proc/$p/cmdline" 2> /dev/null | grep -q -- "--out $out " || continue
    grep -qz "^$var=1$" "/proc/$p/environ" 2> /dev/null && { echo "$p"; return 0; }
  done
  return 1
}

# Starts LAUNCHER... on a long run into folder OUT, stops rank 1 once it trains, and checks that the job
# ends within LIMIT + 12 s with the watchdog's line.
hang_test() {
  local name=$1 var=$2 out=$3
  shift 3
  "$@" "$BIN" train run.json --out "$out" --set train.tokens=1e9 --set train.watchdog_s=$LIMIT \
    > "$out.log" 2>&1 &
  local job=$! victim=
  wait_step_beyond "$out" 20
  victim=$(rank1_pid "$out" "$var") || fail "$name: no rank 1 process found"
  kill -STOP "$victim"
  local t0 rc=0
  t0=$(date +%s.%N)
  for _ in $(seq 1 $(((LIMIT + 12) * 10))); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
  if kill -0 $job 2> /dev/null; then
    kill -CONT "$victim"; kill -TERM $job
    fail "$name: the job still runs $((LIMIT + 12)) s after rank 1 stopped: $(tail -3 "$out.log")"
  fi
  wait $job || rc=$?
  local took
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ $rc -ne 0 ] || fail "$name: exit 0 after a hung rank"
  grep -q "moetrain: error: watchdog: rank 0 finished nothing for [0-9]* s after step [0-9]*" "$out.log" ||
    fail "$name: no watchdog line: $(tail -5 "$out.log")"
  # The launcher ends the stopped rank (or continues it, and its own watchdog ends it).
  for _ in $(seq 1 $(((LIMIT + 5) * 10))); do kill -0 "$victim" 2> /dev/null || break; sleep 0.1; done
  ! kill -0 "$victim" 2> /dev/null || { kill -KILL "$victim"; fail "$name: the stopped rank was left behind"; }
  echo "$name: rank 1 stopped, job ended after $took s (limit $LIMIT s), exit $rc: $(grep -m1 'watchdog:' "$out.log" | cut -c1-90)..."
}

hang_test mpirun OMPI_COMM_WORLD_RANK hang_mpirun mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS
hang_test srun SLURM_PROCID hang_srun srun -n 2 --mpi=pmix --kill-on-bad-exit=1

# srun of two tasks without PMI: each task says what to do, in one line, and exits 2.
rc=0
srun -n 2 --mpi=none "$BIN" train run.json --out nopmi > nopmi.out 2> nopmi.err || rc=$?
[ $rc -eq 2 ] || fail "srun --mpi=none: exit $rc, expected 2: $(cat nopmi.err)"
n=$(grep -c "^moetrain: error: .*srun --mpi=pmix" nopmi.err || true)
[ "$n" -eq 2 ] || fail "srun --mpi=none: $n error lines naming srun --mpi=pmix: $(cat nopmi.err)"
[ ! -e nopmi/checkpoints ] || fail "srun --mpi=none started training"
echo "srun --mpi=none: exit 2, per task: $(grep -m1 '^moetrain: error:' nopmi.err)"
echo "OK"
