# Why: preemption on a real Slurm (tests/slurm/slurm_env.sh), through scripts/slurm/train.sbatch:
# 1. the time limit (--time=1, --signal=B:USR1@59): the run checkpoints, the job requeues itself and
#    continues; `scontrol requeue` stops it with a checkpoint and Slurm requeues it once, with no error
#    from the script; `scancel` stops it with a checkpoint and ends it for good (CANCELLED);
# 2. stopped twice (USR1 to the batch shell, the same path as the time limit) with 1 rank and with 2
#    ranks (srun --mpi=pmix), the run's final weights and Adam state are byte-identical to those of an
#    uninterrupted run of the same ranks (4,000 steps of about a millisecond; the ranks are frozen while
#    the signal travels, see usr1_at_step).
# Usage: slurm_preempt.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"
. tests/slurm/slurm_env.sh
. tests/slurm/common.sh
slurm_test_begin
export MOETRAIN=$BIN
TS=$SRC/scripts/slurm/train.sbatch

# 1. Time limit, scontrol requeue, scancel.
t0=$(date +%s)
id=$(sbatch --parsable --time=1 --signal=B:USR1@59 -o "$TMP/tl.out" "$TS" run.json tl --set train.tokens=1e9)
# Slurm checks the limits every 30 s, so USR1 comes anywhere from 0 to 30 s after each start: if it
# comes before the run has started, the script requeues without starting it, and the next start tries
# again. Once the job has been requeued after a time-limit stop, and before it starts again (a requeued
# job waits several seconds), it gets a long limit, so that no USR1 falls into the checks below.
wait_line tl.out 'exit 3 (timelimit)$' 150
n=$(grep -c 'exit 3 (timelimit)$\|not started (time limit near); requeued$' tl.out)
wait_restarts "$id" "$n"
state=$(job_field "$id" JobState)
scontrol update JobId="$id" TimeLimit=30
[ "$state" = PENDING ] || echo "note: job $id was $state, not PENDING, when its limit was raised"
wait_running_restart "$id" "$n"
ls tl/checkpoints/step_*/state.json > /dev/null || fail "the time-limit stop left no checkpoint"
echo "time limit: checkpointed and requeued after $(($(date +%s) - t0)) s ($n requeue(s))"
wait_step_beyond tl "$(last_step tl)"
scontrol requeue "$id"
wait_running_restart "$id" $((n + 1))
[ "$(grep -c '^20.*exit 3 (stop)$' tl.out)" -eq 1 ] || fail "scontrol requeue: no stop with a checkpoint: $(tail -5 tl.out)"
! grep -q "requeue.*failed\|pending execution" tl.out || fail "scontrol requeue: the script requeued again: $(cat tl.out)"
echo "scontrol requeue: checkpointed, restarted once (restarts $(job_field "$id" Restarts))"
wait_step_beyond tl "$(last_step tl)"
before=$(last_step tl)
scancel "$id"
state=$(slurm_wait_job "$id" 60 | tail -n 1)
[ "$state" = CANCELLED ] || fail "scancel: job state $state, expected CANCELLED"
[ "$(grep -c '^20.*exit 3 (stop)$' tl.out)" -eq 2 ] || fail "scancel: no stop with a checkpoint: $(tail -5 tl.out)"
latest=$(ls -d tl/checkpoints/step_* | tail -n 1)
[ "${latest##*step_}" -ge "$before" ] 2> /dev/null || [ "$((10#${latest##*step_}))" -ge "$before" ] ||
  fail "scancel: latest checkpoint $latest is older than step $before"
sleep 3
[ -z "$(squeue -h -j "$id" 2> /dev/null)" ] || fail "scancel: the job is back in the queue"
echo "scancel: checkpoint ${latest##*/}, job CANCELLED, not restarted (whole part 1: $(($(date +%s) - t0)) s)"

# 2. Several stops, byte-identical to an uninterrupted run: 1 rank and 2 ranks.
STEPS=4000
LONG=(--set train.tokens=$((STEPS * 8 * 32)))
mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS "$BIN" train run.json --out ref2 "${LONG[@]}" \
  > ref2.log 2>&1 || fail "uninterrupted 2-rank run: $(tail -3 ref2.log)"
"$BIN" train run.json --out ref1 "${LONG[@]}" > ref1.log 2>&1 || fail "uninterrupted run: $(tail -3 ref1.log)"
for ranks in 1 2; do
  t0=$(date +%s)
  out=stop$ranks
  id=$(sbatch --parsable --ntasks-per-node=$ranks -o "$TMP/$out.out" "$TS" run.json $out "${LONG[@]}")
  for n in 1 2; do
    usr1_at_step "$id" $out $ranks "$(($(last_step $out) + 100))" $STEPS
    wait_running_restart "$id" $n
  done
  state=$(slurm_wait_job "$id" 120 | tail -n 1)
  [ "$state" = COMPLETED ] || fail "$ranks rank(s): job state $state: $(tail -5 $out.out)"
  [ -f $out/summary.json ] || fail "$ranks rank(s): no summary.json: $(tail -5 $out.out)"
  [ "$(grep -c '(timelimit)$' $out.out)" -eq 2 ] || fail "$ranks rank(s): expected 2 stops: $(cat $out.out)"
  grep -q '"resumes": 2' $out/summary.json || fail "$ranks rank(s): summary.json resumes: $(cat $out/summary.json)"
  final=$(basename "$(ls -d ref$ranks/checkpoints/step_* | tail -n 1)")
  n=0
  for f in ref$ranks/checkpoints/$final/*.safetensors; do
    cmp "$f" "$out/checkpoints/$final/$(basename "$f")" || fail "$ranks rank(s): $(basename "$f") differs"
    n=$((n + 1))
  done
  [ $n -ge 2 ] || fail "$ranks rank(s): only $n safetensors files in $final"
  echo "$ranks rank(s): 2 stops, 2 restarts, $n safetensors files of $final byte-identical ($(($(date +%s) - t0)) s)"
done
echo "OK ($(($(date +%s) - T_ALL)) s)"
