# Why: issue 16's failures, each replayed through the CLI as a hostile user did, must now end in one
# line naming the file and key (exit 2), a refusal, or a checked recovery; never a crash, a silent
# change or exit 0 with lost output. Usage: reliability.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"
M=manifests/examples/tiny_moe.json

# expect_exit CODE PATTERN CMD...: the command exits CODE with exactly one stderr line matching PATTERN.
expect_exit() {
  local want=$1 pattern=$2 rc=0
  shift 2
  "$@" > "$TMP/out" 2> "$TMP/err" || rc=$?
  [ "$rc" -eq "$want" ] || fail "exit $rc (want $want): $* :: $(head -c 300 "$TMP/err")"
  grep -q -- "$pattern" "$TMP/err" || fail "message lacks '$pattern': $* :: $(head -c 300 "$TMP/err")"
  [ "$(wc -l < "$TMP/err")" -eq 1 ] || fail "more than one line: $* :: $(cat "$TMP/err")"
}

# --- manifests: depth, numbers, types ---------------------------------------------------------------
python3 -c "print('{\"model\": ' + '['*100000 + ']'*100000 + '}')" > "$TMP/deep.json"
expect_exit 2 "deep.json: invalid JSON: nested deeper than 64" "$BIN" plan "$TMP/deep.json"
sed 's/"tokens": 409600/"tokens": 1e309/' $M > "$TMP/e309.json"
expect_exit 2 "e309.json: invalid JSON" "$BIN" plan "$TMP/e309.json"
expect_exit 2 "train.tokens: must be in (0, 1e+15], got 1e+308" "$BIN" plan $M --set train.tokens=1e308
expect_exit 2 "train.tokens: must be in" "$BIN" plan $M --set train.tokens=1e20
expect_exit 2 "train.batch_size: must be in \[1, 16777216\]" "$BIN" plan $M --set train.batch_size=1e12
expect_exit 2 "train.batch_size: must be in" "$BIN" plan $M --set train.batch_size=3e9
expect_exit 2 "train.warmup_iters: must be in \[0, 1000000000\]" "$BIN" plan $M --set train.warmup_iters=1e12
expect_exit 2 "eval.tokens: must be in" "$BIN" plan $M --set eval.tokens=1e19
expect_exit 2 "train.batch_size: must be >= 1, got 0" "$BIN" plan $M --set train.batch_size=0
expect_exit 2 "train.micro_batch_size: 32 is larger than train.batch_size (16)" "$BIN" plan $M --set train.micro_batch_size=32
expect_exit 2 "model.head_dim: n_heads x head_dim" "$BIN" plan $M --set model.n_heads=65536 --set model.head_dim=65536
expect_exit 2 "train.tokens: must be a number" "$BIN" plan $M --set train.tokens=1e309
"$BIN" plan $M --set train.batch_size='"auto"' > /dev/null || fail "batch_size auto"
mkdir -p "$TMP/afolder"
sed 's/"tokens": 409600/"match_compute": "afolder"/' $M > "$TMP/match.json"
expect_exit 2 "afolder: is a folder" "$BIN" plan "$TMP/match.json"
echo "manifests: ok"

# --- data: index.json types and depth, tokenizer ids ---------------------------------------------------
for i in $(seq 1 3000); do echo "The quick brown fox $i jumps over the lazy dog."; done > "$TMP/text.txt"
"$BIN" data build --input "$TMP/text.txt" --out "$TMP/ds" --tokenizer byte --val-tokens 8192 > /dev/null
cp -r "$TMP/ds" "$TMP/ds_bad"
for edit in '"format": 7' '"tokenizer": 5' '"splits": []'; do
  python3 - "$TMP/ds/index.json" "$TMP/ds_bad/index.json" "$edit" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); k, v = sys.argv[3].split(': ', 1); j[json.loads(k)] = json.loads(v)
json.dump(j, open(sys.argv[2], 'w'))
PY
  expect_exit 2 "ds_bad/index.json: " "$BIN" data inspect "$TMP/ds_bad"
done
python3 -c "print('['*100000 + ']'*100000)" > "$TMP/ds_bad/index.json"
expect_exit 2 "index.json: invalid JSON: nested deeper" "$BIN" data inspect "$TMP/ds_bad"
echo "data: ok"

# --- a run: one writer per folder, early SIGTERM, schedule override, corrupt newest checkpoint ----------
SET=(--set data.train="$TMP/ds" --set data.val="$TMP/ds" --set model.seq_len=32 --set train.tokens=25600
     --set train.batch_size=16 --set train.micro_batch_size=8 --set eval.every=0 --set eval.tokens=2048
     --set checkpoint.every=10 --set checkpoint.keep=5 --set log.every=10)
LONG=(--set train.tokens=2560000 --set data.reuse=strict --set data.unique_tokens=100000)
"$BIN" train $M "${SET[@]}" "${LONG[@]}" --out "$TMP/run" > "$TMP/run1.log" &
pid=$!
for _ in $(seq 1 300); do [ -s "$TMP/run/metrics.jsonl" ] && break; sleep 0.1; done
expect_exit 2 "run: the run folder is in use by PID $pid" "$BIN" train $M "${SET[@]}" "${LONG[@]}" --out "$TMP/run"
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 3 ] || fail "SIGTERM: exit $rc"
echo "lock: a second run on the folder exits 2 naming PID $pid"

# SIGTERM as soon as the handler is there (SigCgt bit 15 in /proc), before the run folder exists: the
# handler comes before anything slow, and the run ends with a checkpoint and exit 3, not 143.
"$BIN" train $M "${SET[@]}" --out "$TMP/early" > /dev/null 2>&1 &
pid=$!
caught() { local m; m=$(sed -n 's/^SigCgt:\t*//p' /proc/$pid/status 2>/dev/null) && (( (16#$m >> 14) & 1 )); }
for _ in $(seq 1 1000); do caught && break; sleep 0.01; done
[ ! -e "$TMP/early/metrics.jsonl" ] || fail "the SIGTERM handler came after the run had started"
kill -TERM $pid
rc=0
wait $pid || rc=$?
[ $rc -eq 3 ] || fail "early SIGTERM: exit $rc (want 3)"
echo "early SIGTERM: exit 3"

"$BIN" train $M "${SET[@]}" --out "$TMP/ok" --stop-after 30 > /dev/null
expect_exit 2 "override-schedule" "$BIN" train $M "${SET[@]}" --set train.lr=1e-3 --out "$TMP/ok" --resume auto
"$BIN" train $M "${SET[@]}" --set train.lr=1e-3 --out "$TMP/ok" --resume auto --override-schedule --stop-after 40 \
  > "$TMP/override.log"
grep -q -- "--override-schedule: train.lr: 0.003 -> 0.001" "$TMP/override.log" || fail "override not logged: $(cat "$TMP/override.log")"
grep -q '"step":40' "$TMP/ok/metrics.jsonl" || fail "override run did not train"
echo "override-schedule: $(grep -- --override "$TMP/override.log")"

# state.json is checksummed: "step": 1e15 in the newest is a corrupt checkpoint, skipped with one warning.
cp -r "$TMP/ok" "$TMP/forged"
sed -i 's/"step": 40/"step": 1e15/' "$TMP/forged/checkpoints/step_00000040/state.json"
rc=0
"$BIN" train $M "${SET[@]}" --set train.lr=1e-3 --out "$TMP/forged" --resume auto --override-schedule --stop-after 45 \
  > "$TMP/forged.out" 2> "$TMP/forged.err" || rc=$?
[ $rc -eq 0 ] || fail "resume past a corrupt newest checkpoint: exit $rc: $(cat "$TMP/forged.err")"
[ "$(wc -l < "$TMP/forged.err")" -eq 1 ] && grep -q "warning: skipping a corrupt checkpoint.*step_00000040/state.json.*resuming from .*step_00000030" "$TMP/forged.err" ||
  fail "warning: $(cat "$TMP/forged.err")"
grep -q "from step_00000030\|step_00000030 (step 30)" "$TMP/forged.out" || fail "did not resume from step 30: $(cat "$TMP/forged.out")"
echo "corrupt newest: $(cut -c1-160 "$TMP/forged.err")"

# --- non-finite weights: never checkpointed, never evaluated --------------------------------------------
rc=0
"$BIN" train $M "${SET[@]}" --set train.lr=3e38 --set train.warmup_iters=0 --set checkpoint.every=1 --out "$TMP/nan" \
  > /dev/null 2> "$TMP/nan.err" || rc=$?
[ $rc -eq 1 ] || fail "diverging run: exit $rc: $(cat "$TMP/nan.err")"
grep -q "override-schedule" "$TMP/nan.err" || fail "NaN advice: $(cat "$TMP/nan.err")"
for ck in "$TMP"/nan/checkpoints/step_*; do
  [ -e "$ck" ] || continue
  "$BIN" eval --checkpoint "$ck" > /dev/null 2>&1 || fail "a checkpoint of the diverged run does not evaluate: $ck"
done
echo "divergence: $(cut -c1-200 "$TMP/nan.err")"
# A checkpoint whose weights are NaN (forged with valid sums) is refused by eval.
cp -r "$TMP/ok/checkpoints/step_00000030" "$TMP/nanck"
python3 - "$TMP/nanck" <<'PY'
import json, struct, sys, zlib
d = sys.argv[1]; f = d + '/model-tp0-ep0.safetensors'
b = bytearray(open(f, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
b[8 + n:8 + n + 4] = struct.pack('<f', float('nan')); open(f, 'wb').write(b)
st = json.load(open(d + '/state.json')); st.pop('crc32')
st['files']['model-tp0-ep0.safetensors'] = {'bytes': len(b), 'crc32': zlib.crc32(b)}
text = json.dumps(st, separators=(',', ':'), ensure_ascii=False)
st['crc32'] = zlib.crc32(text.encode()); json.dump(st, open(d + '/state.json', 'w'), indent=2)
PY
expect_exit 2 "NaN or Inf" "$BIN" eval --checkpoint "$TMP/nanck"
echo "eval of a NaN checkpoint: $(cat "$TMP/err")"

# --- lost output: a log that cannot be written is exit 1, never 0 ----------------------------------------
rc=0
"$BIN" train $M "${SET[@]}" --set train.tokens=2560 --out "$TMP/full" > /dev/full 2> "$TMP/full.err" || rc=$?
[ $rc -eq 1 ] || fail "stdout on a full disk: exit $rc"
grep -q "stdout" "$TMP/full.err" || fail "full disk message: $(cat "$TMP/full.err")"
echo "stdout on a full disk: exit 1"
echo "PASS"
