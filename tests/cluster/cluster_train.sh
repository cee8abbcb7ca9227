# Why: the layout contract (any tp / ep / dp layout trains the single-process model, DESIGN.md
# "Parallelism") must hold when the ranks are on different hosts, talking over a network, each host with
# its own /dev/shm (the CPU core registry) and hostname. On the emulated cluster of
# tests/cluster/cluster.sh (ctl + 3 nodes) this runs, against the single-process reference of
# tests/mpi/layouts.sh and judged by its compare_runs (loss 1e-5 relative, parameters 1e-4):
#   - mpirun from ctl over node1 and node2 (tests/cluster/mpirun_hosts), ranks placed round robin so that
#     the groups cross hosts: dp 4 x ep 2 with ZeRO-1 (ep groups span the nodes) and tp 2 x dp 2 (tp
#     groups span them);
#   - one rank per host without OMP_NUM_THREADS: each host's registry counts one process, so each rank
#     takes both cores (the header says so per host); and the checkpoint that ranks on both hosts write
#     at step 3 resumes to the same bytes at step 6 as a run that never stopped;
#   - `sbatch -N 2 --ntasks-per-node=2 scripts/slurm/train.sbatch` at dp 4 x ep 2: Slurm places ranks 0-1
#     on node1 and 2-3 on node2, so the ep groups stay inside a node (the header says so).
# Then the cluster is stopped and nothing of it may be left.
# Usage: cluster_train.sh MOETRAIN SCRATCH_DIR COMPARE_RUNS
source "$(dirname "$0")/../script_common.sh" "$@"
. tests/cluster/cluster.sh
cluster_test_begin "$3"
T_PART=$(date +%s.%N)
# Seconds since the last call (or the start).
took() { local t; t=$(date +%s.%N); awk -v a="$T_PART" -v b="$t" 'BEGIN { printf "%.1f s", b - a }'; T_PART=$t; }
export OMP_NUM_THREADS=1 MOETRAIN=$BIN

L=$TMP/layouts
bash tests/mpi/layouts.sh "$BIN" "$CMP" "$L" setup > /dev/null
echo "the single-process reference: $(took)"

# mpirun over node1 and node2, two slots each, ranks round robin (rank 0 on node1, 1 on node2, ...).
export MT_MPIEXEC=$SRC/tests/cluster/mpirun_hosts CL_MPI_HOSTS=node1:2,node2:2 CL_MPI_MAP_BY=node
for case in zero1_ep2_dp4 tp2_dp2; do
  out=$(bash tests/mpi/layouts.sh "$BIN" "$CMP" "$L" $case 2>&1) || { echo "$out"; fail "layout $case across hosts"; }
  echo "$out" | grep -E '^(layouts.sh|compare_runs):' | cut -c1-240
  echo "  ($(took))"
done
grep -q "on 2 nodes (node1: ranks 0,2, node2: ranks 1,3); ep groups span nodes" "$L/zero1_ep2_dp4.log" ||
  fail "zero1_ep2_dp4: no line saying that the ep groups span the nodes: $(grep world "$L/zero1_ep2_dp4.log")"
grep -q "tp groups span nodes" "$L/tp2_dp2.log" || fail "tp2_dp2: no line saying that the tp groups span the nodes"

# One rank per host: without OMP_NUM_THREADS each takes both cores of its host (one step is enough to
# see it); then, on one thread each, a run stopped at 3 and resumed against a run to 6.
cd "$TMP"
run_ep2() {
  local out=$1
  shift
  CL_MPI_HOSTS=node1:1,node2:1 "$MT_MPIEXEC" --allow-run-as-root -np 2 "$BIN" train "$L/reference/config.json" \
    --set parallel.ep=2 --out "$out" "$@" >> "$out.log" 2>&1 || fail "$out: $(tail -5 "$out.log")"
}
(unset OMP_NUM_THREADS; run_ep2 threads --stop-after 1)
grep -q "cpu, node1, node2: 2 threads (2 cores, 1 process: cores / processes)" threads.log ||
  fail "not 2 threads per rank from 1 process per host: $(grep 'cpu,' threads.log)"
echo "1 rank per host: $(grep -o 'cpu, node1, node2: [^;]*' threads.log) ($(took))"
run_ep2 whole --stop-after 6
run_ep2 parts --stop-after 3
run_ep2 parts --resume auto --stop-after 6
grep -q "resuming .* (step 3)" parts.log || fail "the second part did not resume at step 3: $(cat parts.log)"
n=0
for f in whole/checkpoints/step_00000006/*.safetensors; do
  cmp "$f" "parts/checkpoints/step_00000006/$(basename "$f")" || fail "$(basename "$f") differs after the resume"
  n=$((n + 1))
done
[ $n -eq 4 ] || fail "expected 4 shard files (model and optimizer of ep 0 and 1), found $n"
echo "ep 2 over node1 and node2, stopped at 3 and resumed: the $n shard files at step 6 are identical ($(took))"

# sbatch -N 2 --ntasks-per-node=2 through train.sbatch.
id=$(sbatch --parsable -N 2 --ntasks-per-node=2 --output="$TMP/job.out" "$SRC/scripts/slurm/train.sbatch" \
       "$L/reference/config.json" sb --set parallel.ep=2 --stop-after 5)
poll 120 eval '[ -z "$(squeue -h -j "$id" -o %i)" ]' || fail "job $id still queued after 120 s: $(tail -5 job.out)"
state=$(grep "JobId=$id " "$CL_DIR/log/jobcomp.txt" | sed 's/.* JobState=\([A-Z_]*\).*/\1/')
[ "$state" = COMPLETED ] || fail "job $id: state '$state': $(tail -5 job.out)"
grep -q "on 2 nodes (node1: ranks 0-1, node2: ranks 2-3); ep groups inside a node" job.out ||
  fail "sbatch: no line placing ranks 0-1 on node1 and the ep groups inside a node: $(grep world job.out)"
verdict=$("$CMP" "$L/reference" sb) || fail "sbatch: the run differs from one process: $verdict"
echo "sbatch -N 2 --ntasks-per-node=2: $(grep -o 'world 4 .*node;' job.out) $verdict ($(took))"

cluster_stop
cluster_check_clean || fail "the cluster left something behind"
echo "OK ($(($(date +%s) - T_ALL)) s)"
