# Why: what the Slurm tests (tests/scripted/slurm_*.sh) share besides the cluster and the start of every
# scripted test (tests/script_common.sh: BIN, TMP, fail): the Slurm start, a tiny dataset and run
# manifest, and waiting for a run's progress or a job's restart. Sourced after script_common.sh and
# slurm_env.sh. Usage: . tests/slurm/common.sh; slurm_test_begin

# SRC (the source tree) and T_ALL (the start time), one OpenMP thread per rank, the local Slurm started,
# TMP/ds and TMP/run.json written; then the test runs in TMP.
slurm_test_begin() {
  SRC=$PWD
  T_ALL=$(date +%s)
  export OMP_NUM_THREADS=1
  slurm_start "$TMP/slurm" || fail "the local Slurm did not start"
  slurm_test_data "$TMP"
  cd "$TMP"
}

# DIR/ds (200 kB of dictionary text, byte tokens) and DIR/run.json: a tiny dense model of STEPS steps
# (default 2000) with a metrics line every 10 steps, no checkpoints but the ones a stop writes.
slurm_test_data() {
  local dir=$1 steps=${2:-2000}
  dict_dataset "$dir" 200000
  cat > "$dir/run.json" << EOF
{
  "name": "tiny",
  "model": {"vocab_size": 256, "d_model": 32, "n_layers": 2, "n_heads": 2, "head_dim": 16, "d_ffn": 96, "seq_len": 32},
  "train": {"tokens": $((steps * 8 * 32)), "batch_size": 8, "micro_batch_size": 4, "lr": 3e-3, "warmup_iters": 2, "seed": 1},
  "data": {"train": "$dir/ds", "val": "$dir/ds", "reuse": "strict", "unique_tokens": 65536},
  "eval": {"every": 0, "tokens": 1024},
  "checkpoint": {"every": 0, "keep": 1},
  "log": {"every": 10}
}
EOF
}

# The last logged step of run folder DIR (0 before the first).
last_step() {
  local s
  s=$(grep -o '"step":[0-9]*' "$1/metrics.jsonl" 2> /dev/null | tail -n 1 | cut -d: -f2)
  echo "${s:-0}"
}

# Runs CMD ARGS... every 0.1 s until it succeeds (returns 0) or SECS have passed (returns 1). The shell
# polls at SCHED_FIFO when it may: on a 2-core VM, two MPI ranks polling for messages kept a normal shell
# off the CPU for their whole run (8 s), and a test that sees a step or a requeue that late acts too late.
poll() {
  local secs=$1 rc=1
  shift
  chrt -f -p 10 $$ 2> /dev/null || true
  for _ in $(seq 1 $((secs * 10))); do
    if "$@"; then
      rc=0
      break
    fi
    sleep 0.1
  done
  chrt -o -p 0 $$ 2> /dev/null || true
  return $rc
}

# True once run folder DIR has logged a step beyond AFTER.
step_beyond() { [ "$(last_step "$1")" -gt "$2" ]; }

# Waits (up to 60 s) until run folder DIR has logged a step beyond AFTER.
wait_step_beyond() {
  poll 60 step_beyond "$1" "$2" ||
    fail "$1: no step beyond $2 within 60 s (queue: $(squeue -h -o "%i %T %r" | tr "\n" " "))"
}

# A field of `scontrol show job ID` (e.g. Restarts, JobState).
job_field() { scontrol show job "$1" 2> /dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }

# True once job ID has been requeued N times (any state); with RUNNING, only while it also runs.
restarted() {
  local r
  r=$(job_field "$1" Restarts)
  [ "${r:-0}" -ge "$2" ] && { [ -z "${3:-}" ] || [ "$(job_field "$1" JobState)" = "$3" ]; }
}

# Waits (up to 60 s) until job ID has been requeued N times (any state): the test sees the requeue while
# the job still waits to start again.
wait_restarts() {
  poll 60 restarted "$1" "$2" ||
    fail "job $1 not requeued $2 time(s) after 60 s: $(scontrol show job "$1" | grep -E 'JobState|Restarts')"
}

# Waits (up to 60 s) until job ID runs with Restarts >= N.
wait_running_restart() {
  poll 60 restarted "$1" "$2" RUNNING ||
    fail "job $1 not running with $2 restart(s) after 60 s: $(scontrol show job "$1" | grep -E 'JobState|Restarts')"
}

# Waits (up to SECS) until FILE has a line matching the grep pattern PATTERN.
wait_line() {
  poll "$3" grep -q -- "$2" "$1" ||
    fail "$1: no line matching '$2' within $3 s: $(tail -5 "$1" 2> /dev/null)"
}

# True once run folder OUT has logged a step beyond AFTER; its rank processes (this binary's, started in
# this folder) are then frozen by SIGSTOP, their PIDs in FROZEN.
freeze_beyond() {
  local out=$1 after=$2 p
  step_beyond "$out" "$after" || return 1
  FROZEN=
  for p in $(pgrep -f -- "^$BIN train run.json --out $out " || true); do
    [ "$(readlink "/proc/$p/cwd")" = "$PWD" ] && FROZEN+="$p "
  done
  kill -STOP $FROZEN 2> /dev/null || true
}

# Stops the run of job ID with USR1 to its batch shell (train.sbatch's time-limit path) once run folder
# OUT, run by RANKS processes of the tiny model, has logged a step beyond AFTER, before TOTAL. A step
# takes about a millisecond, and on a loaded machine Slurm may take seconds to pass a signal on, so the
# ranks are frozen as soon as the step is seen (within the poll, at SCHED_FIFO), USR1 is sent, and they
# go on (SIGCONT) once the TERM that the script sends them is pending in every rank: the run cannot end
# before the stop reaches it.
usr1_at_step() {
  local id=$1 out=$2 ranks=$3 after=$4 total=$5 at ok=1
  poll 60 freeze_beyond "$out" "$after" || fail "$out: no step beyond $after within 60 s"
  if [ "$(echo $FROZEN | wc -w)" -ne "$ranks" ]; then
    kill -CONT $FROZEN 2> /dev/null || true
    fail "$out: expected $ranks rank process(es), found '$FROZEN'"
  fi
  at=$(last_step "$out")
  [ "$at" -lt "$total" ] || fail "$out: the run reached its last step ($at) before it could be frozen"
  scancel -b --signal=USR1 "$id"
  poll 60 term_pending $FROZEN && ok=0
  kill -CONT $FROZEN 2> /dev/null || true
  [ $ok = 0 ] || fail "$out: no TERM reached the frozen ranks within 60 s of USR1 to the batch shell"
}

# True when every process PID has SIGTERM (15: bit 14 of the masks) pending, or is no longer stopped
# (Slurm may send SIGCONT along with a signal) or has ended.
term_pending() {
  local p m hit
  for p in "$@"; do
    grep -q '^State:.*stopped' "/proc/$p/status" 2> /dev/null || continue
    hit=0
    for m in $(awk '/^(SigPnd|ShdPnd):/ {print $2}' "/proc/$p/status" 2> /dev/null); do
      (( (16#$m >> 14) & 1 )) && hit=1
    done
    [ $hit = 1 ] || return 1
  done
  return 0
}
