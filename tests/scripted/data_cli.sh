# Why: `moetrain data build` and `moetrain data inspect` are what a user runs first; they must work on
# plain and gzip text, report what a dataset holds, and turn every corrupt file into one line on
# stderr and exit 2 (never a crash or a wrong sample). Usage: data_cli.sh MOETRAIN SCRATCH_DIR
source "$(dirname "$0")/../script_common.sh" "$@"

# expect_input_error WHAT ARGS...: exit 2 and exactly one line of output that contains WHAT.
expect_input_error() {
  local what=$1 rc=0 out
  shift
  out=$("$BIN" "$@" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "moetrain $*: exit $rc, expected 2: $out"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "moetrain $*: more than one line: $out"
  case "$out" in *"$what"*) ;; *) fail "moetrain $*: '$out' does not mention '$what'" ;; esac
}

# A small corpus, ASCII and not (2,400 lines, about 100 KB).
for i in $(seq 1 400); do
  printf 'line %d: the quick brown fox\nnaïve café %d — 日本語 😀\nplain words and numbers %d %d\n' \
    "$i" "$i" "$((i * 7))" "$((i * 13))"
  printf '  indented line\n\nend of block %d.\n' "$i"
done > "$TMP/text.txt"
gzip -c "$TMP/text.txt" > "$TMP/text.txt.gz"
bytes=$(wc -c < "$TMP/text.txt")
chars=$(python3 -c 'import sys; print(len(open(sys.argv[1], encoding="utf-8").read()))' "$TMP/text.txt")

# build: plain and gzip give the same shards; the summary and index.json count tokens and characters.
out=$("$BIN" data build --input "$TMP/text.txt" --out "$TMP/ds" --val-tokens 2000)
echo "$out"
case "$out" in *"$(python3 -c "print(f'{$bytes:,}')") tokens"*) ;; *) fail "build summary: $out" ;; esac
"$BIN" data build --input "$TMP/text.txt.gz" --out "$TMP/gz" --val-tokens 2000 > /dev/null
cmp "$TMP/ds/train_000000.bin" "$TMP/gz/train_000000.bin" || fail "gzip build differs"
cmp "$TMP/ds/index.json" "$TMP/gz/index.json" || fail "gzip index differs"
python3 - "$TMP/ds/index.json" "$bytes" "$chars" <<'EOF' || fail "index.json counts"
import json, sys
j = json.load(open(sys.argv[1]))
shards = j["splits"]["train"] + j["splits"]["val"]
tokens = sum(s["tokens"] for s in shards)
chars = sum(s["characters"] for s in shards)
assert j["tokenizer"] == {"type": "byte"} and j["vocab_size"] == 256, j
assert tokens == int(sys.argv[2]) and chars == int(sys.argv[3]), (tokens, chars, sys.argv)
assert j["splits"]["val"][0]["tokens"] >= 2000
EOF
# stdin works too.
"$BIN" data build --input - --out "$TMP/stdin" --val-tokens 2000 < "$TMP/text.txt" > /dev/null
cmp "$TMP/ds/train_000000.bin" "$TMP/stdin/train_000000.bin" || fail "stdin build differs"

# inspect: the folder, one shard, a glob.
out=$("$BIN" data inspect "$TMP/ds")
echo "$out"
for want in "tokenizer: byte-level" "vocab: 256" "train" "val" "native v1" "line 1: the quick brown fox" "naïve café"; do
  case "$out" in *"$want"*) ;; *) fail "inspect does not show '$want'" ;; esac
done
out=$("$BIN" data inspect "$TMP/ds/val_000000.bin" --vocab 256)
case "$out" in *"native v1"*"vocab: 256"*) ;; *) fail "inspect of one shard: $out" ;; esac
"$BIN" data inspect "$TMP/ds/*.bin" > /dev/null

# Corrupt files: one line, exit 2, naming the file.
cp "$TMP/ds/val_000000.bin" "$TMP/short.bin"
truncate -s -1 "$TMP/short.bin"
expect_input_error "$TMP/short.bin: size" data inspect "$TMP/short.bin"
cp "$TMP/ds/val_000000.bin" "$TMP/magic.bin"
printf '\x01\x02\x03\x04' | dd of="$TMP/magic.bin" conv=notrunc status=none
expect_input_error "bad magic" data inspect "$TMP/magic.bin"
cp "$TMP/ds/val_000000.bin" "$TMP/eval.bin"
printf '\x8a\xd8\x34\x01' | dd of="$TMP/eval.bin" conv=notrunc status=none   # 20240522: llm.c eval file
expect_input_error "eval file" data inspect "$TMP/eval.bin"
# A token id >= the vocab (0x1234 at token 10) in a dataset folder whose index.json says 256.
cp -r "$TMP/ds" "$TMP/badtok"
printf '\x34\x12' | dd of="$TMP/badtok/val_000000.bin" bs=1 seek=$((1024 + 20)) conv=notrunc status=none
expect_input_error "token 4660 at position 10" data inspect "$TMP/badtok"
expect_input_error "no such file" data inspect "$TMP/nothing_here"
printf 'abc' > "$TMP/odd.raw"
expect_input_error "odd size" data inspect "raw:$TMP/odd.raw"
printf 'MMIDIDX\0\0\1\0\0\0' > "$TMP/cut.idx"
: > "$TMP/cut.bin"
expect_input_error "truncated header" data inspect "$TMP/cut"

# Bad build arguments.
expect_input_error "no such input" data build --input "$TMP/missing.txt" --out "$TMP/x"
expect_input_error "leaves no training tokens" data build --input "$TMP/text.txt" --out "$TMP/x" --val-tokens "$bytes"
head -c $(($(wc -c < "$TMP/text.txt.gz") / 2)) "$TMP/text.txt.gz" > "$TMP/cut.gz"
expect_input_error "truncated gzip" data build --input "$TMP/cut.gz" --out "$TMP/x"
# JSON Lines, zstd, workers, Megatron output read back by inspect.
python3 - "$TMP/text.txt" "$TMP/docs.jsonl" <<'EOF'
import json, sys
blocks = open(sys.argv[1], encoding="utf-8").read().split("\n\n")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for i, d in enumerate(blocks):
        if d:
            f.write(json.dumps({"id": i, "text": d}, ensure_ascii=i % 2 == 0) + "\n")
EOF
ndocs=$(wc -l < "$TMP/docs.jsonl")
zstd -q -c "$TMP/docs.jsonl" > "$TMP/docs.jsonl.zst"
out=$("$BIN" data build --input "$TMP/docs.jsonl.zst" --out "$TMP/jl" --val-tokens 2000 --workers 2 --out-format megatron)
echo "$out"
case "$out" in *"1 file (1 JSON Lines, 0 gzip, 1 zstd), $ndocs documents separated by newlines"*"2 workers"*) ;;
  *) fail "jsonl build summary: $out" ;; esac
"$BIN" data build --input "$TMP/docs.jsonl" --out "$TMP/jl1" --val-tokens 2000 --workers 1 --out-format megatron > /dev/null
for f in train_000000.bin val_000000.bin index.json text_document.bin text_document.idx; do
  cmp "$TMP/jl/$f" "$TMP/jl1/$f" || fail "zstd / 2 workers differs from plain / 1 worker: $f"
done
out=$("$BIN" data inspect "$TMP/jl/text_document" --vocab 256 --tokenizer byte)
echo "$out"
case "$out" in *"Megatron-LM indexed dataset"*"line 1: the quick brown fox"*) ;; *) fail "inspect megatron: $out" ;; esac
printf '{"text": "a"}\n{"text": "b"\n' > "$TMP/bad.jsonl"
expect_input_error "bad.jsonl:2: not valid JSON" data build --input "$TMP/bad.jsonl" --out "$TMP/x"
out=$("$BIN" data build --input "$TMP/bad.jsonl" "$TMP/docs.jsonl" --out "$TMP/skip" --skip-bad-lines 2>&1)
case "$out" in *"1 malformed line skipped (the first: $TMP/bad.jsonl:2: not valid JSON)"*) ;; *) fail "skip: $out" ;; esac
echo "data_cli: OK"
