# Why: `moetrain sample` must show what a model learned (issue 18): a tiny model trained on the CPU to
# memorise a short text continues a prompt with that text under greedy decoding, from its checkpoint;
# the trainer prints a sample at each eval when eval.sample_tokens > 0; bad options are one line and
# exit 2. Usage: sample_cli.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"

# One short paragraph, repeated: the model sees it many times over.
para='The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. '
for _ in $(seq 1 400); do printf '%s' "$para"; done > "$TMP/text.txt"
"$BIN" data build --input "$TMP/text.txt" --out "$TMP/ds" --val-tokens 2000 > /dev/null

M=manifests/examples/tiny_moe.json
"$BIN" train $M --set data.train="$TMP/ds" --set data.val="$TMP/ds" --set model.seq_len=64 \
  --set train.tokens=81920 --set train.batch_size=16 --set train.micro_batch_size=16 --set eval.every=40 \
  --set data.reuse=strict --set data.unique_tokens=30000 --set eval.tokens=1024 --set eval.sample_tokens=8 --set checkpoint.every=0 --out "$TMP/run" > "$TMP/train.log"
grep -q '^sample:' "$TMP/train.log" || fail "the trainer printed no sample at eval"
grep -A1 '^sample:' "$TMP/train.log" | tail -1

# Greedy decoding from a prompt in the middle of the paragraph gives the paragraph back.
prompt='pack my box'
out=$("$BIN" sample --checkpoint "$TMP/run" --prompt "$prompt" --tokens 60 --temperature 0)
echo "greedy: $out"
want=$(python3 -c 'import sys; t = sys.argv[1] * 2; i = t.index(sys.argv[2]); print(t[i:i + len(sys.argv[2]) + 60])' \
  "$para" "$prompt")
[ "$out" = "$want" ] || fail "greedy sample '$out' is not the memorised text '$want'"

# Sampling at a temperature is reproducible by seed.
a=$("$BIN" sample --checkpoint "$TMP/run" --tokens 30 --temperature 1 --top-k 5 --seed 7)
b=$("$BIN" sample --checkpoint "$TMP/run" --tokens 30 --temperature 1 --top-k 5 --seed 7)
[ "$a" = "$b" ] || fail "same seed, different samples"

rc=0
out=$("$BIN" sample --checkpoint "$TMP/run" --temperature -1 2>&1) || rc=$?
[ $rc -eq 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "--temperature -1: exit $rc: $out"
rc=0
out=$("$BIN" sample --checkpoint "$TMP/nothing" 2>&1) || rc=$?
[ $rc -eq 2 ] || fail "missing checkpoint: exit $rc: $out"
echo "sample_cli: OK"
