# Why: the user-facing guarantees of `moetrain sweep` that only the real binary can show: a dry run
# starts nothing; a sweep of tiny dense and MoE runs (match_compute) finishes with a results table and
# the EL fit; running it again skips every run; --collect rewrites the same table; a failing run is
# reported while the others finish; scripts/plot_sweep.py draws its four figures. `sweep --slurm` and
# scripts/slurm/train.sbatch are tested on a real Slurm: tests/scripted/slurm_*.sh.
# Usage: sweep_cli.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"
# Two runs at a time on a small machine: one thread each.
export OMP_NUM_THREADS=1

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" -c 'import matplotlib, numpy' 2> /dev/null ||
  fail "$PY cannot import matplotlib and numpy (scripts/setup.sh installs python3-matplotlib)"

# Tiny real text: 200 kB of the GNU dictionary.
dict_dataset "$TMP" 200000

# The dense reference as its own manifest (the MoE runs match its compute), and the sweep: the
# reference, 0.5x and 2x its tokens, and two MoEs at the reference's compute. Paths are relative to
# the manifests' folder.
cat > "$TMP/dense_ref.json" << 'EOF'
{
  "name": "dense_1c",
  "model": {"vocab_size": 256, "d_model": 32, "n_layers": 2, "n_heads": 2, "head_dim": 16, "d_ffn": 96, "seq_len": 32},
  "train": {"tokens": 8192, "batch_size": 8, "micro_batch_size": 8, "lr": 3e-3, "warmup_iters": 2, "seed": 1},
  "data": {"train": "ds", "val": "ds"},
  "eval": {"every": 0, "tokens": 1024},
  "checkpoint": {"every": 0, "keep": 1},
  "log": {"every": 4}
}
EOF
cat > "$TMP/sweep.json" << 'EOF'
{
  "name": "cli_sweep",
  "reference": "dense_1c",
  "base": {
    "model": {"vocab_size": 256, "d_model": 32, "n_layers": 2, "n_heads": 2, "head_dim": 16, "d_ffn": 96, "seq_len": 32},
    "train": {"batch_size": 8, "micro_batch_size": 8, "lr": 3e-3, "warmup_iters": 2, "seed": 1},
    "data": {"train": "ds", "val": "ds"},
    "eval": {"every": 0, "tokens": 1024},
    "checkpoint": {"every": 0, "keep": 1},
    "log": {"every": 4}
  },
  "runs": [
    {"name": "dense_1c", "train.tokens": 8192},
    {"name": "dense_0.5c", "train.tokens": 4096},
    {"name": "dense_2c", "train.tokens": 16384},
    {"name": "moe_a", "train.match_compute": "dense_ref.json",
     "model.moe": {"layout": "1dense", "n_experts": 8, "top_k": 1, "d_expert": 16, "d_shared": 16}},
    {"name": "moe_b", "train.match_compute": "dense_ref.json", "data.reuse": "loose",
     "model.moe": {"layout": "1dense", "n_experts": 4, "top_k": 2, "d_expert": 32, "d_shared": 32}}
  ]
}
EOF
RUNS=(dense_1c dense_0.5c dense_2c moe_a moe_b)
S=$TMP/sweep.json
D=$TMP/D

# 1. --dry-run: every run listed, run folders with absolute manifests, nothing started.
"$BIN" sweep "$S" --out "$D" --dry-run > "$TMP/dry.log"
for r in "${RUNS[@]}"; do
  grep -q "^  $r: pending: moetrain train $D/$r/manifest.json" "$TMP/dry.log" || fail "dry run does not list $r"
  [ -f "$D/$r/manifest.json" ] || fail "dry run wrote no $r/manifest.json"
done
grep -q "dry run: nothing started" "$TMP/dry.log" || fail "dry run: $(cat "$TMP/dry.log")"
[ -z "$(find "$D" -name summary.json -o -name train.log -o -name metrics.jsonl)" ] || fail "dry run started a run"
grep -q "\"$TMP/ds\"" "$D/dense_1c/manifest.json" || fail "run manifest data path is not absolute"
grep -q "\"$TMP/dense_ref.json\"" "$D/moe_a/manifest.json" || fail "run manifest match_compute is not absolute"
echo "dry run: ${#RUNS[@]} runs listed, nothing started"

# 1b. --only NAME[,NAME]: just those runs (dry or real); an unknown name is exit 2 listing the runs.
"$BIN" sweep "$S" --out "$TMP/O" --dry-run --only moe_b,dense_0.5c > "$TMP/only.log"
[ "$(grep -c '^  [a-z_0-9.]*: pending' "$TMP/only.log")" = 2 ] || fail "--only dry run: $(cat "$TMP/only.log")"
grep -q "^  dense_0.5c: pending" "$TMP/only.log" && grep -q "^  moe_b: pending" "$TMP/only.log" || fail "--only lists other runs"
rc=0
"$BIN" sweep "$S" --out "$TMP/O" --only dense_1c,nope > "$TMP/only_bad.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--only with an unknown run: exit $rc, expected 2"
grep -q "no run named 'nope'.*dense_1c, dense_0.5c, dense_2c, moe_a, moe_b" "$TMP/only_bad.log" ||
  fail "--only error does not list the runs: $(cat "$TMP/only_bad.log")"
"$BIN" sweep "$S" --out "$TMP/O" --only dense_0.5c > "$TMP/only_run.log" 2>&1 || fail "--only run: $(tail -5 "$TMP/only_run.log")"
[ -f "$TMP/O/dense_0.5c/summary.json" ] || fail "--only did not run dense_0.5c"
[ -z "$(find "$TMP/O" -name summary.json ! -path '*/dense_0.5c/*')" ] || fail "--only ran other runs"
echo "--only: runs just the named runs; an unknown name is exit 2 with the list"

# 2. The sweep, two runs at a time: every run finishes, one results row per run, the EL fit line.
t0=$(date +%s)
"$BIN" sweep "$S" --out "$D" --jobs 2 > "$TMP/sweep1.log" || fail "sweep exit $?: $(tail -5 "$TMP/sweep1.log")"
for r in "${RUNS[@]}"; do
  [ -f "$D/$r/summary.json" ] || fail "$r: no summary.json"
  grep -q "\"val_bpc\"" "$D/$r/metrics.jsonl" || fail "$r: no eval in metrics.jsonl"
  grep -q "^$r,finished," "$D/results.csv" || fail "$r: not finished in results.csv"
done
head -1 "$D/results.csv" | grep -qx "name,status,reuse,N,Na,ra,M,C,D,D_hat,epochs,M_over_M_ref,val_loss,val_bpc,delta_bpc,wall_seconds,EL,restarts" ||
  fail "results.csv header: $(head -1 "$D/results.csv")"
[ "$(wc -l < "$D/results.csv")" -eq $((${#RUNS[@]} + 1)) ] || fail "results.csv: $(wc -l < "$D/results.csv") lines"
[ -s "$D/results.md" ] || fail "no results.md"
[ "$(grep -c '^\[[0-9]*/5\] start ' "$TMP/sweep1.log")" -eq 5 ] || fail "sweep did not start 5 runs"
el=$(grep '^EL: ' "$TMP/sweep1.log") || fail "no EL line in the sweep output"
if [[ $el == "EL: dense fit"* ]]; then
  for r in moe_a moe_b; do
    grep "^$r," "$D/results.csv" | awk -F, '{ exit !($17 != "" && $17 > 0) }' || fail "$r: no EL in results.csv"
  done
else
  [[ $el == "EL: not available: "?* ]] || fail "EL line without a reason: $el"
fi
# match_compute: the MoEs' compute C is the reference's within one batch.
cref=$(awk -F, '$1 == "dense_1c" { print $8 }' "$D/results.csv")
for r in moe_a moe_b; do
  c=$(awk -F, -v r=$r '$1 == r { print $8 }' "$D/results.csv")
  awk -v a="$c" -v b="$cref" 'BEGIN { d = a / b - 1; exit !(d < 0.3 && d > -0.3) }' ||
    fail "$r: compute $c does not match the reference's $cref"
done
echo "sweep: ${#RUNS[@]} runs finished in $(($(date +%s) - t0)) s; $el"

# 3. The same command again: every run skipped, no log grows.
sizes() { for r in "${RUNS[@]}"; do stat -c %s "$D/$r/train.log"; done; }
before=$(sizes)
"$BIN" sweep "$S" --out "$D" --jobs 2 > "$TMP/sweep2.log" || fail "second sweep exit $?"
[ "$(grep -c 'skip .*: finished' "$TMP/sweep2.log")" -eq 5 ] || fail "second sweep: $(cat "$TMP/sweep2.log")"
! grep -q '\] start ' "$TMP/sweep2.log" || fail "second sweep started a run"
grep -q "(5 finished, 0 to resume, 0 to start, 0 failed before" "$TMP/sweep2.log" || fail "second sweep: $(head -1 "$TMP/sweep2.log")"
[ "$before" = "$(sizes)" ] || fail "a train.log grew on the second sweep"
echo "again: all 5 skipped"

# 4. --collect rewrites the same table.
cp "$D/results.csv" "$TMP/results.csv.1"
rm "$D/results.md"
"$BIN" sweep --collect "$D" > "$TMP/collect.log"
cmp "$TMP/results.csv.1" "$D/results.csv" || fail "--collect wrote a different results.csv"
[ -s "$D/results.md" ] || fail "--collect wrote no results.md"
echo "collect: identical results.csv"

# 5. A run that cannot train (its data does not exist) fails, the other one finishes, exit non-zero.
sed -e 's/"name": "cli_sweep"/"name": "bad_sweep"/' -e '/"reference"/d' "$S" |
  awk '/"runs": \[/ { print; print "    {\"name\": \"bad\", \"train.tokens\": 2048, \"data.train\": \"no_such_data\"},"; \
                      print "    {\"name\": \"ok\", \"train.tokens\": 2048}"; skip = 1; next }
       skip && /^  \]/ { skip = 0 } !skip' > "$TMP/bad.json"
rc=0
"$BIN" sweep "$TMP/bad.json" --out "$TMP/D3" > "$TMP/bad.out" 2> "$TMP/bad.err" || rc=$?
[ $rc -ne 0 ] || fail "a sweep with a failed run exit 0"
grep -q "FAILED bad (exit [0-9]*).*no_such_data" "$TMP/bad.out" || fail "failed run not reported: $(cat "$TMP/bad.out")"
grep -q "1 of 2 runs failed: bad" "$TMP/bad.err" || fail "failed sweep message: $(cat "$TMP/bad.err")"
[ -f "$TMP/D3/ok/summary.json" ] || fail "the good run did not finish next to the failed one"
[ ! -f "$TMP/D3/bad/summary.json" ] || fail "the failed run has a summary.json"
grep -q "^ok,finished," "$TMP/D3/results.csv" || fail "no results for the good run"
grep -q "^bad,failed," "$TMP/D3/results.csv" || fail "the failed run is not 'failed' in results.csv"
"$BIN" sweep "$TMP/bad.json" --out "$TMP/D3" --dry-run > "$TMP/bad2.out" 2>&1 || fail "dry run after a failure"
grep -q "(1 finished, 0 to resume, 0 to start, 1 failed before: run again)" "$TMP/bad2.out" || fail "failed run not counted: $(head -1 "$TMP/bad2.out")"
echo "failed run: exit $rc, $(cat "$TMP/bad.err")"

# 6. The figures, of this sweep and of the fixture sweep (collected into a copy first).
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
FIGS=(fig_bpc_vs_ra.png fig_delta_vs_ra_reuse.png fig_bpc_vs_epochs.png fig_curves.png fig_load.png)
cp -r tests/fixtures/sweep "$TMP/fixture"
"$BIN" sweep --collect "$TMP/fixture" > /dev/null
for src in "$D" "$TMP/fixture"; do
  out=$TMP/plots_$(basename "$src")
  "$PY" scripts/plot_sweep.py "$src" --out "$out" > "$TMP/plot.log" || fail "plot_sweep.py $src: exit $?"
  [ "$(grep -c '^wrote ' "$TMP/plot.log")" -eq 5 ] || fail "plot_sweep.py output: $(cat "$TMP/plot.log")"
  for f in "${FIGS[@]}"; do is_png "$out/$f" || fail "$out/$f: missing or not a PNG"; done
done
grep -q "moe_ra54_loose" "$TMP/plot.log" || fail "plot_sweep.py did not name the fixture's pending run"
"$PY" scripts/plot_sweep.py "$D" > /dev/null
for f in "${FIGS[@]}"; do is_png "$D/$f" || fail "default --out: no $D/$f"; done
mkdir -p "$TMP/empty"
rc=0
"$PY" scripts/plot_sweep.py "$TMP/empty" > /dev/null 2> "$TMP/plot.err" || rc=$?
[ $rc -eq 2 ] || fail "plot_sweep.py without results.csv: exit $rc, expected 2"
[ "$(wc -l < "$TMP/plot.err")" -eq 1 ] && grep -q "results.csv" "$TMP/plot.err" || fail "plot error: $(cat "$TMP/plot.err")"
echo "plots: 5 PNGs for the sweep and for the fixture; without results.csv: $(cat "$TMP/plot.err")"

# 7. The expert-load figures of one MoE run (scripts/plot_run.py), beside its files by default, and
# one line with exit 2 for a run folder without MoE load metrics and for a malformed metrics line.
"$PY" scripts/plot_run.py "$D/moe_a" > "$TMP/plot_run.log" || fail "plot_run.py: exit $?"
for f in fig_load_heatmap.png fig_load_max_mean.png; do is_png "$D/moe_a/$f" || fail "plot_run.py: no $D/moe_a/$f"; done
for bad in dense_1c broken; do
  if [ $bad = broken ]; then
    mkdir -p "$TMP/broken" && { head -1 "$D/moe_a/metrics.jsonl"; echo '{"step": 9, "moe_load": [[0.5]]}'; } \
      > "$TMP/broken/metrics.jsonl"
    src=$TMP/broken
  else
    src=$D/$bad
  fi
  rc=0
  "$PY" scripts/plot_run.py "$src" > /dev/null 2> "$TMP/plot_run.err" || rc=$?
  [ $rc -eq 2 ] && [ "$(wc -l < "$TMP/plot_run.err")" -eq 1 ] || fail "plot_run.py $bad: exit $rc, $(cat "$TMP/plot_run.err")"
  echo "plot_run.py $bad: $(cat "$TMP/plot_run.err")"
done
echo "OK"
