# Why: the user-facing guarantees of `moetrain train` that only a real run can show (issue 4): a tiny
# MoE on real text learns; --stop-after + --resume auto and SIGTERM + --resume auto end bit-identical
# to a run that never stopped; a corrupt checkpoint is refused; a NaN loss stops with a clear error;
# eval, export, init and grad work on what train wrote. Usage: train_cli.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"

# Real text: the first 1.5 MB of the GNU dictionary.
dict_dataset "$TMP" 1500000 20000

M=manifests/examples/tiny_moe.json
SET=(--set data.train="$TMP/ds" --set data.val="$TMP/ds" --set model.seq_len=32 --set train.tokens=102400
     --set train.batch_size=16 --set train.micro_batch_size=8 --set eval.every=0 --set eval.tokens=8192
     --set checkpoint.every=60 --set log.every=10)

# 1. A full run: the loss falls, the outputs of DESIGN.md exist.
"$BIN" train $M "${SET[@]}" --out "$TMP/full" > "$TMP/full.log"
for f in config.json metrics.jsonl summary.json checkpoints/step_00000200/state.json; do
  [ -f "$TMP/full/$f" ] || fail "missing $f"
done
first=$(grep -m1 '"loss"' "$TMP/full/metrics.jsonl" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
last=$(grep '"loss"' "$TMP/full/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.5) }' || fail "loss did not fall enough: $first -> $last"
grep -q '"expert_load"' "$TMP/full/metrics.jsonl" || fail "no expert load in metrics"
grep -q '"val_bpc"' "$TMP/full/summary.json" || fail "no val_bpc in summary"
echo "loss $first -> $last"

# 2. --stop-after then --resume auto: bit-identical weights and Adam state at the end.
rc=0
"$BIN" train $M "${SET[@]}" --out "$TMP/stop" --stop-after 77 > /dev/null || rc=$?
[ $rc -eq 0 ] || fail "--stop-after exit $rc"
[ -f "$TMP/stop/checkpoints/step_00000077/state.json" ] || fail "no checkpoint at the stop"
[ ! -f "$TMP/stop/summary.json" ] || fail "a stopped run wrote summary.json"
"$BIN" train $M "${SET[@]}" --out "$TMP/stop" --resume auto > /dev/null
for f in model-tp0-ep0.safetensors optimizer-tp0-ep0.safetensors; do
  cmp "$TMP/full/checkpoints/step_00000200/$f" "$TMP/stop/checkpoints/step_00000200/$f" ||
    fail "resume after --stop-after is not bit-identical ($f)"
done
echo "stop-after + resume: bit-identical"

# 3. SIGTERM mid-run: exit 3 with a checkpoint; resuming ends bit-identical too.
"$BIN" train $M "${SET[@]}" --set train.tokens=1024000 --set checkpoint.every=0 --out "$TMP/term" > "$TMP/term.log" &
pid=$!
for _ in $(seq 1 200); do
  n=$(grep -c '"loss"' "$TMP/term/metrics.jsonl" 2>/dev/null) || true  # prints 0 and fails on none
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.1
done
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 3 ] || fail "SIGTERM: exit $rc, expected 3"
ck=$(ls -d "$TMP"/term/checkpoints/step_* | tail -1)
[ -f "$ck/state.json" ] || fail "SIGTERM left no checkpoint"
"$BIN" train $M "${SET[@]}" --set train.tokens=1024000 --set checkpoint.every=0 --out "$TMP/term" --resume auto --stop-after 2000 > /dev/null
"$BIN" train $M "${SET[@]}" --set train.tokens=1024000 --set checkpoint.every=0 --out "$TMP/term_ref" > /dev/null
cmp "$TMP/term/checkpoints/step_00002000/model-tp0-ep0.safetensors" \
    "$TMP/term_ref/checkpoints/step_00002000/model-tp0-ep0.safetensors" || fail "resume after SIGTERM differs"
echo "SIGTERM at $(basename "$ck") + resume: bit-identical"

# 4. A corrupt checkpoint is refused with one line naming the file (exit 2).
cp -r "$TMP/stop" "$TMP/corrupt"
rm -rf "$TMP/corrupt/checkpoints/step_00000200" "$TMP/corrupt/summary.json"
ck=$(ls -d "$TMP"/corrupt/checkpoints/step_* | tail -1)
printf '\x55' | dd of="$ck/model-tp0-ep0.safetensors" bs=1 seek=4000 conv=notrunc 2> /dev/null
rc=0
"$BIN" train $M "${SET[@]}" --out "$TMP/corrupt" --resume auto > "$TMP/corrupt.out" 2> "$TMP/corrupt.err" || rc=$?
[ $rc -eq 2 ] || fail "corrupt checkpoint: exit $rc, expected 2"
grep -q "model-tp0-ep0.safetensors" "$TMP/corrupt.err" || fail "corrupt checkpoint message: $(cat "$TMP/corrupt.err")"
[ "$(wc -l < "$TMP/corrupt.err")" -eq 1 ] || fail "corrupt checkpoint: more than one line"
echo "corrupt checkpoint: $(cat "$TMP/corrupt.err")"

# 5. A diverging run stops with a clear error (exit 1), keeping its last good checkpoint.
rc=0
"$BIN" train $M "${SET[@]}" --set train.lr=1e30 --set train.warmup_iters=0 --out "$TMP/nan" > /dev/null 2> "$TMP/nan.err" || rc=$?
[ $rc -eq 1 ] || fail "NaN run: exit $rc, expected 1"
grep -qi "loss is \(nan\|inf\|-nan\)\|gradient norm" "$TMP/nan.err" || fail "NaN message: $(cat "$TMP/nan.err")"
echo "divergence: $(cut -c1-140 "$TMP/nan.err")"

# 6. eval and export of what train wrote; eval reproduces the run's final val loss.
"$BIN" eval --checkpoint "$TMP/full" --json > "$TMP/eval.json"
want=$(sed -n 's/.*"val_loss": \([0-9.e+-]*\).*/\1/p' "$TMP/full/summary.json")
got=$(sed -n 's/.*"val_loss": \([0-9.e+-]*\).*/\1/p' "$TMP/eval.json")
awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-6 * a) }' ||
  fail "eval val_loss $got != summary $want"
"$BIN" export --checkpoint "$TMP/full" --out "$TMP/full.safetensors" > /dev/null
[ -s "$TMP/full.safetensors" ] || fail "export wrote nothing"
# grad on the exported weights: its cross-entropy equals the loss eval computes on the same tokens.
"$BIN" grad $M "${SET[@]}" --checkpoint "$TMP/full.safetensors" --tokens "$TMP/ds/val_000000.bin" \
  --out "$TMP/grad.safetensors" > "$TMP/grad.log"
grep -q "gradients ->" "$TMP/grad.log" || fail "grad: $(cat "$TMP/grad.log")"
echo "eval val_loss $got (summary $want); export and grad ok"
echo "PASS"
