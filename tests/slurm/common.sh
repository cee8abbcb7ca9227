# Why: what the Slurm tests (tests/scripted/slurm_*.sh) share besides the cluster: their start, a tiny
# dataset and run manifest, and waiting for a run's progress or a job's restart. Sourced after
# slurm_env.sh. Usage: . tests/slurm/common.sh; slurm_test_begin MOETRAIN SCRATCH_DIR

fail() { echo "FAIL: $*" >&2; exit 1; }

# BIN and TMP (emptied) from the test's arguments, SRC (the source tree) and T_ALL (the start time), one
# OpenMP thread per rank, the local Slurm started, TMP/ds and TMP/run.json written; then the test runs in TMP.
slurm_test_begin() {
  SRC=$PWD
  T_ALL=$(date +%s)
  BIN=$(realpath "$1")
  TMP=$2
  rm -rf "$TMP" && mkdir -p "$TMP"
  TMP=$(realpath "$TMP")
  export OMP_NUM_THREADS=1
  slurm_start "$TMP/slurm" || fail "the local Slurm did not start"
  slurm_test_data "$TMP"
  cd "$TMP"
}

# DIR/ds (200 kB of dictionary text, byte tokens) and DIR/run.json: a tiny dense model of STEPS steps
# (default 2000) with a metrics line every 10 steps, no checkpoints but the ones a stop writes.
slurm_test_data() {
  local dir=$1 steps=${2:-2000}
  { zcat /usr/share/dictd/gcide.dict.dz || true; } | head -c 200000 > "$dir/text.txt"
  [ -s "$dir/text.txt" ] || fail "no text from /usr/share/dictd/gcide.dict.dz (scripts/setup.sh installs dict-gcide)"
  "$BIN" data build --input "$dir/text.txt" --out "$dir/ds" --tokenizer byte --val-tokens 8192 > /dev/null
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

# Waits (up to 60 s) until run folder DIR has logged a step beyond AFTER.
wait_step_beyond() {
  local dir=$1 after=$2
  for _ in $(seq 1 600); do
    [ "$(last_step "$dir")" -gt "$after" ] && return 0
    sleep 0.1
  done
  fail "$dir: no step beyond $after within 60 s (queue: $(squeue -h -o "%i %T %r" | tr "\n" " "))"
}

# A field of `scontrol show job ID` (e.g. Restarts, JobState).
job_field() { scontrol show job "$1" 2> /dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; }

# Waits (up to 60 s) until job ID has been requeued N times (any state), watching at SCHED_FIFO (see
# usr1_at_step) so that the test sees the requeue while the job still waits to start again.
wait_restarts() {
  local id=$1 n=$2 r
  chrt -f -p 10 $$ 2> /dev/null || true
  for _ in $(seq 1 600); do
    r=$(job_field "$id" Restarts)
    [ "${r:-0}" -ge "$n" ] && break
    sleep 0.1
  done
  chrt -o -p 0 $$ 2> /dev/null || true
  [ "${r:-0}" -ge "$n" ] || fail "job $id not requeued $n time(s) after 60 s: $(scontrol show job "$id" | grep -E 'JobState|Restarts')"
}

# Waits (up to SECONDS) until FILE has a line matching the grep pattern PATTERN, at SCHED_FIFO.
wait_line() {
  local file=$1 pattern=$2 secs=$3 ok=1
  chrt -f -p 10 $$ 2> /dev/null || true
  for _ in $(seq 1 $((secs * 10))); do
    grep -q -- "$pattern" "$file" 2> /dev/null && ok=0 && break
    sleep 0.1
  done
  chrt -o -p 0 $$ 2> /dev/null || true
  [ $ok = 0 ] || fail "$file: no line matching '$pattern' within $secs s: $(tail -5 "$file" 2> /dev/null)"
}

# Waits (up to 60 s) until job ID runs with Restarts >= N.
wait_running_restart() {
  local id=$1 n=$2
  for _ in $(seq 1 600); do
    [ "$(job_field "$id" JobState)" = RUNNING ] && [ "$(job_field "$id" Restarts)" -ge "$n" ] && return 0
    sleep 0.1
  done
  fail "job $id not running with $n restart(s) after 60 s: $(scontrol show job "$id" | grep -E 'JobState|Restarts')"
}

# Stops the run of job ID with USR1 to its batch shell (train.sbatch's time-limit path) once run folder
# OUT, run by RANKS processes of the tiny model, has logged a step beyond AFTER, before TOTAL. A step
# takes about a millisecond, and on a loaded machine Slurm may take seconds to pass a signal on, so the
# ranks are frozen (SIGSTOP) as soon as the step is seen, USR1 is sent, and they go on (SIGCONT) once the
# TERM that the script sends them is pending in every rank: the run cannot end before the stop reaches
# it. Meanwhile this shell runs SCHED_FIFO: on a 2-core VM, two MPI ranks polling for messages kept a
# normal shell off the CPU for their whole run (8 s).
usr1_at_step() {
  local id=$1 out=$2 ranks=$3 after=$4 total=$5 pids= p at
  chrt -f -p 10 $$ 2> /dev/null || echo "usr1_at_step: no SCHED_FIFO for the test shell; a loaded machine may starve it" >&2
  wait_step_beyond "$out" "$after"
  for p in $(pgrep -f -- "^$BIN train run.json --out $out " || true); do
    [ "$(readlink "/proc/$p/cwd")" = "$PWD" ] && pids+="$p "
  done
  [ "$(echo $pids | wc -w)" -eq "$ranks" ] || fail "$out: expected $ranks rank process(es), found '$pids'"
  kill -STOP $pids 2> /dev/null || true
  at=$(last_step "$out")
  [ "$at" -lt "$total" ] || fail "$out: the run reached its last step ($at) before it could be frozen"
  scancel -b --signal=USR1 "$id"
  for _ in $(seq 1 600); do
    term_pending $pids && break
    sleep 0.1
  done
  kill -CONT $pids 2> /dev/null || true
  chrt -o -p 0 $$ 2> /dev/null || true
  term_pending $pids || fail "$out: no TERM reached the frozen ranks within 60 s of USR1 to the batch shell"
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
