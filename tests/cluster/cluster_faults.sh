# Why: on a real cluster a node can lose power, lose its cable or fall behind a partition that heals, in
# the middle of a run. None of that shows on one machine, so this runs one Slurm job of the tiny dense
# model (tests/slurm/common.sh) on the emulated cluster of tests/cluster/cluster.sh (ctl + 3 nodes) with
# `sbatch -N 2 --ntasks-per-node=2 scripts/slurm/train.sbatch` and does to it, one after the other:
#   (c) node2 behind a partition (its switch port drops every frame), healed once the job has ended:
#       the job comes back on the same two nodes;
#   (b) node2's cable cut (and left cut), node3 made available: back on node1 + node3;
#   (a) node3's power lost (its cable and every process gone), no other node available: the requeued
#       job waits for two nodes, so the user cancels it and submits the run again with -N 1: it goes on
#       from the same checkpoint on node1 alone, 2 ranks instead of 4 (the checkpoint reshards on load).
# Each time the job must end within train.watchdog_s + 60 s with one watchdog line that names the lost
# host and requeue itself (train.sbatch); the run must resume from its newest checkpoint, which must
# verify (the resume names it, with no warning); the run then finishes at step $STOP and its loss curve and weights
# must match an uninterrupted single-process run (compare_runs; the metrics steps continue without a gap
# or a repeat). Prints one line per event: seconds to end the job, the line, the resume step, the nodes.
# Usage: cluster_faults.sh MOETRAIN SCRATCH_DIR COMPARE_RUNS
source "$(dirname "$0")/../script_common.sh" "$@"
. tests/cluster/cluster.sh
cluster_test_begin "$3" 10
LIMIT=10   # train.watchdog_s
STOP=100   # the run's last step (--stop-after): it ends there with exit 0
export OMP_NUM_THREADS=1 MOETRAIN=$BIN

slurm_test_data "$TMP"
cd "$TMP"
SETS=(--set train.watchdog_s=$LIMIT --set checkpoint.every=10 --set checkpoint.keep=3
      --set train.micro_batch_size=2 --set log.every=5)

scontrol update nodename=node3 state=drain reason=spare
submit() {
  id=$(sbatch --parsable -N "$1" --ntasks-per-node=2 --output="$TMP/job.out" "$SRC/scripts/slurm/train.sbatch" \
         run.json run "${SETS[@]}" --stop-after $STOP)
}
submit 2

newest_step() { local c; c=$(ls run/checkpoints 2> /dev/null | grep '^step_' | tail -n 1); echo $((10#${c#step_})); }
ckpt_beyond() { [ -n "$(ls run/checkpoints 2> /dev/null)" ] && [ "$(newest_step)" -gt "$1" ]; }
count() { grep -c -- "$1" job.out || true; }
# The job's output since its last start.
segment() { awk '/ job [0-9]+: run.json -> run \(restart/ { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' job.out; }

resumed=0
# event NAME VICTIM ACTION AFTER_END NODES_AFTER: once the running job has written a checkpoint beyond
# the last resume, ACTION VICTIM; checks that the job ends in time with one line naming VICTIM and
# requeues itself, runs AFTER_END VICTIM, and waits for the next start, on NODES_AFTER (squeue's form),
# from the newest checkpoint.
event() {
  local name=$1 victim=$2 action=$3 after_end=$4 nodes_after=$5 t0 ends starts line secs step nodes ckpt
  poll 60 ckpt_beyond $resumed || fail "$name: no checkpoint beyond step $resumed within 60 s: $(tail -3 job.out)"
  nodes=$(squeue -h -j "$id" -o %N)
  ends=$(count ': exit ')
  starts=$(count ' run.json -> run (restart')
  t0=$(date +%s.%N)
  $action "$victim"
  poll $((LIMIT + 60)) eval '[ "$(count ": exit ")" -gt "$ends" ]' ||
    fail "$name: the job still runs $((LIMIT + 60)) s after the event: $(tail -5 job.out)"
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  ckpt=$(newest_step)
  [ "$(segment | grep -c 'moetrain: error')" -eq 1 ] || fail "$name: not one error line: $(segment | grep error)"
  line=$(segment | grep 'moetrain: error: watchdog:')
  [[ $line == *"no answer within "*" from $victim ("* ]] || fail "$name: the line does not name $victim: $line"
  segment | grep -q "failed start (exit 124, .*requeued, resumes from step_" || fail "$name: not requeued: $(segment | tail -3)"
  $after_end "$victim"
  poll 90 eval '[ "$(count " run.json -> run (restart")" -gt "$starts" ]' || fail "$name: no new start within 90 s"
  poll 60 eval 'segment | grep -q "^resuming "' || fail "$name: no resume line: $(segment)"
  ! segment | grep -q '^moetrain: warning' || fail "$name: a warning at the resume: $(segment)"
  step=$(segment | sed -n 's/^resuming .* (step \([0-9]*\))$/\1/p')
  [ "$step" = "$ckpt" ] || fail "$name: resumed at step $step, not at the newest checkpoint (step $ckpt)"
  [ "$(squeue -h -j "$id" -o %N)" = "$nodes_after" ] || fail "$name: restarted on $(squeue -h -j "$id" -o %N), expected $nodes_after"
  resumed=$step
  echo "$name: job ended $secs s after it (limit $LIMIT + 60 s); resumed at step $step; nodes $nodes -> $nodes_after"
  echo "  ${line:0:200}..."
}

# (c) a partition that heals: node2's port drops frames until the job has ended, then forwards again.
heal_partition() { cluster_unblock "$1"; }
event "partition (node2, healed)" node2 cluster_block heal_partition "node[1-2]"
# (b) the cable cut stays cut; node3 joins the partition's nodes.
spare_in() { scontrol update nodename=node3 state=resume; }
event "cable cut (node2)" node2 cluster_cut spare_in "node[1,3]"
# (a) power loss of node3 with node2 still cut off: only node1 is left, so the requeued job waits for two
# nodes; the user cancels it and submits the run again on one.
resubmit() {
  poll 60 eval '[ "$(job_field "$id" JobState)" = PENDING ]' || fail "job $id not pending after the power loss"
  on ctl scancel "$id"
  submit 1
}
event "power loss (node3)" node3 cluster_crash resubmit node1

poll 120 eval '[ "$(count ": exit 0")" -ge 1 ]' || fail "the run did not finish at step $STOP: $(tail -5 job.out)"
# The uninterrupted run, in one process, against which the loss curve and the weights are judged.
"$BIN" train run.json --out ref "${SETS[@]}" --stop-after $STOP > ref.log 2>&1 || fail "reference run: $(tail -3 ref.log)"
steps() { grep -o '"step":[0-9]*' "$1/metrics.jsonl" | cut -d: -f2 | tr '\n' ' '; }
[ "$(steps run)" = "$(steps ref)" ] || fail "the logged steps differ from the uninterrupted run's: $(steps run)"
"$CMP" --loss-tol 1e-4 --param-tol 1e-3 --grad-norm-tol 1e-3 --min-steps 20 ref run || fail "the run drifted from the uninterrupted run"
cluster_stop
cluster_check_clean || fail "the cluster left something behind"
echo "OK ($(($(date +%s) - T_ALL)) s)"
