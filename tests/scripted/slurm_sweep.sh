# Why: `moetrain sweep --slurm` on a real Slurm (tests/slurm/slurm_env.sh), CPU-only (--gpus-per-run 0):
# the scripts it writes; sbatch's own error text and exit code when submitting fails; a submitted array
# whose tasks train their runs under srun --mpi=pmix, where a task stopped as at its time limit (USR1)
# checkpoints, requeues itself and finishes, a cancelled task stops with a checkpoint and stays stopped,
# a run that cannot train is failed; and the collect job's results (restarts, wall time over segments).
# What one node without GPUs cannot show, the GPU lines of the scripts, is checked as text only.
# Usage: slurm_sweep.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"
. tests/slurm/slurm_env.sh
. tests/slurm/common.sh
slurm_test_begin
cat > sweep.json << EOF
{
  "name": "slurm_sweep",
  "base": $(cat run.json),
  "runs": [
    {"name": "long", "train.tokens": $((1500 * 256))},
    {"name": "short", "train.tokens": $((300 * 256))},
    {"name": "bad", "train.tokens": $((300 * 256)), "data.train": "$TMP/no_such_data"},
    {"name": "cancelled", "train.tokens": 1e9}
  ]
}
EOF

# 1. The scripts of a GPU sweep (text only: no GPU here), nothing submitted.
"$BIN" sweep sweep.json --out G --slurm --dry-run --gpus-per-run 2 --cpus-per-task 4 --srun-mpi pmi2 \
  --signal-lead 300 --slurm-opt=--partition=debug > g.log
for f in G/sweep.sbatch G/collect.sbatch G/slurm/train.sbatch; do bash -n "$f" || fail "$f does not parse"; done
for l in "--array=0-3" "--ntasks-per-node=2" "--gpus-per-node=2" "--cpus-per-task=4" "--signal=B:USR1@300" \
         "--requeue" "--partition=debug"; do
  grep -qx -- "#SBATCH $l" G/sweep.sbatch || fail "sweep.sbatch: no #SBATCH $l"
done
grep -q "MT_SRUN_MPI=\${MT_SRUN_MPI-'pmi2'}" G/sweep.sbatch || fail "sweep.sbatch: srun MPI plugin"
cmp G/slurm/train.sbatch "$SRC/scripts/slurm/train.sbatch" || fail "G/slurm/train.sbatch is not scripts/slurm/train.sbatch"
[ -z "$(squeue -h)" ] || fail "--dry-run submitted a job"
echo "GPU sweep scripts: $(grep -c '^#SBATCH' G/sweep.sbatch) #SBATCH lines, nothing submitted"

# 2. sbatch fails: its message and exit code reach the user.
rc=0
"$BIN" sweep sweep.json --out E --slurm --slurm-opt=--partition=no_such_partition > e.out 2> e.err || rc=$?
[ $rc -ne 0 ] || fail "a failed sbatch: exit 0"
grep -q "failed (exit 1): sbatch: error: .*[Pp]artition" e.err || fail "sbatch error text: $(cat e.err)"
echo "sbatch error: $(head -c 160 e.err)"

# 3. The real thing, CPU-only: 4 tasks of 1 rank, 2 at a time on this node.
t0=$(date +%s)
"$BIN" sweep sweep.json --out D --slurm --gpus-per-run 0 --cpus-per-task 1 > d.log 2>&1 || fail "sweep --slurm: $(cat d.log)"
arr=$(sed -n 's/^submitted array job \([0-9]*\) and collect job \([0-9]*\).*/\1/p' d.log)
col=$(sed -n 's/^submitted array job \([0-9]*\) and collect job \([0-9]*\).*/\2/p' d.log)
[ -n "$arr" ] && [ -n "$col" ] || fail "no job ids: $(cat d.log)"
wait_step_beyond D/long 100
scancel -b --signal=USR1 "${arr}_0"
for _ in $(seq 1 600); do
  [ "$(grep -c "^==== " D/long/train.log)" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c "^==== " D/long/train.log)" -ge 2 ] || fail "task 0 did not restart after USR1: $(tail -5 D/long/train.log)"
wait_step_beyond D/cancelled 50
scancel "${arr}_3"
slurm_wait_job "$col" 180 > /dev/null || fail "the collect job did not end"
echo "array $arr and collect $col done in $(($(date +%s) - t0)) s"
cut -d, -f1,2,16,18 D/results.csv
grep -q "^long,finished,.*,1$" D/results.csv || fail "long: not finished after 1 restart"
grep -q "^short,finished,.*,0$" D/results.csv || fail "short: not finished without restarts"
grep -q "^bad,failed," D/results.csv || fail "bad: not failed"
grep -q "^cancelled,incomplete," D/results.csv || fail "cancelled: not incomplete (cancelled with a checkpoint)"
[ "$(grep -c "^==== " D/cancelled/train.log)" -eq 1 ] || fail "the cancelled task started again"
grep -q "no_such_data" D/bad/train.log || fail "bad: $(tail -3 D/bad/train.log)"
# Wall time over both segments of the restarted run: at least the first segment's.
first=$(grep -o '"wall_seconds": [0-9.]*' D/long/summary.json | awk '{ print $2 }')
[ -n "$first" ] && awk -v w="$first" 'BEGIN { exit !(w > 0) }' || fail "long: wall_seconds $first"
grep -q "restarts" D/results.md || fail "results.md has no restarts column"
echo "OK ($(($(date +%s) - T_ALL)) s)"
