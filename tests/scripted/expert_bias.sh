# Why: aux-loss-free balancing (model.moe.balance bias) keeps state outside the weights, the expert bias,
# moved after every step by the load of the whole step (all micro-batches, all dp / ep ranks). So: a run
# stopped and resumed ends bit-identical to one that never stopped (the bias is in the checkpoint), and
# dp2 and ep2 (micro-batches split differently over ranks) end with the same bias and loads as one process.
# Usage: expert_bias.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"

dict_dataset "$TMP" 400000 8192
M=manifests/examples/tiny_moe.json
SET=(--set data.train="$TMP/ds" --set data.val="$TMP/ds" --set model.seq_len=32 --set train.tokens=20480
     --set train.batch_size=16 --set train.micro_batch_size=4 --set eval.every=0 --set eval.tokens=4096
     --set checkpoint.every=20 --set log.every=1 --set model.moe.balance=bias --set model.moe.bias_rate=0.01)
export OMP_NUM_THREADS=1
bias_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["moe_bias"])' "$1/checkpoints/step_00000040/state.json"; }
loads_of() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "expert_load" in o: print(o["step"], o["expert_load"])' "$1/metrics.jsonl"; }

"$BIN" train $M "${SET[@]}" --out "$TMP/full" > /dev/null
[ "$(bias_of "$TMP/full")" != "[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]" ] || fail "the expert bias never moved"

# Stopped at step 13 (not a checkpoint step: the stop writes one), resumed: bit-identical at the end.
"$BIN" train $M "${SET[@]}" --out "$TMP/stop" --stop-after 13 > /dev/null
"$BIN" train $M "${SET[@]}" --out "$TMP/stop" --resume auto > /dev/null
for f in model-tp0-ep0.safetensors optimizer-tp0-ep0.safetensors; do
  cmp "$TMP/full/checkpoints/step_00000040/$f" "$TMP/stop/checkpoints/step_00000040/$f" ||
    fail "resume with an expert bias is not bit-identical ($f)"
done
[ "$(bias_of "$TMP/full")" = "$(bias_of "$TMP/stop")" ] || fail "the resumed run ends with another expert bias"
echo "stop at 13 + resume: bit-identical weights, Adam state and expert bias"

# dp2 and ep2: the same loads at every step and the same bias at the end as one process.
for layout in dp2 ep2; do
  extra=()
  [ $layout = ep2 ] && extra=(--set parallel.ep=2)
  mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS "$BIN" train $M "${SET[@]}" "${extra[@]}" \
    --out "$TMP/$layout" > /dev/null
  [ "$(loads_of "$TMP/full")" = "$(loads_of "$TMP/$layout")" ] || fail "$layout: expert loads differ from one process"
  [ "$(bias_of "$TMP/full")" = "$(bias_of "$TMP/$layout")" ] || fail "$layout: the expert bias differs from one process"
  echo "$layout: the same loads at all 40 steps and the same expert bias as one process"
done
