#!/usr/bin/env bash
# Why: the speed of `data build` on a corpus as corpora come (README "Corpora as they come"): gcide
# written as JSON Lines, one document per dictionary entry (an entry starts at an unindented line after
# a blank one), compressed with zstd; built byte-level and with GPT-2 BPE (Megatron output too) on 1 and
# 2 workers. Prints seconds, MB/s of text and peak RSS per build, and fails if 1 and 2 workers do not
# write the same bytes. GPT-2's tokenizer.json comes from tests/js (scripts/setup_js.sh installs it).
# Usage: scripts/bench_data_build.sh [MOETRAIN] [WORKDIR]   (defaults: build/moetrain, /tmp/bench_data)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build/moetrain}")
W=${2:-/tmp/bench_data}
mkdir -p "$W"

if [ ! -f "$W/gcide.jsonl.zst" ]; then
  zcat /usr/share/dictd/gcide.dict.dz | python3 -c '
import json, sys
doc, prev_blank = [], True
out = sys.stdout
for line in sys.stdin.buffer.read().decode("utf-8", "replace").split("\n"):
    if prev_blank and line and not line[0].isspace() and doc:
        out.write(json.dumps({"text": "\n".join(doc).strip("\n")}) + "\n")
        doc = []
    doc.append(line)
    prev_blank = not line.strip()
if doc:
    out.write(json.dumps({"text": "\n".join(doc).strip("\n")}) + "\n")
' > "$W/gcide.jsonl"
  zstd -q -f -19 -T0 "$W/gcide.jsonl" -o "$W/gcide.jsonl.zst"
fi
[ -f "$W/gpt2/tokenizer.json" ] || { mkdir -p "$W/gpt2" && node tests/js/bpe_reference.js tokenizer-json r50k_base "$W/gpt2/tokenizer.json"; }
text_mb=$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["text"].encode()) for l in open(sys.argv[1], encoding="utf-8")) / 1e6)' "$W/gcide.jsonl")
echo "gcide as JSON Lines: $(wc -l < "$W/gcide.jsonl") documents, $text_mb MB of text, $(($(stat -c %s "$W/gcide.jsonl.zst") / 1000000)) MB as .jsonl.zst"
echo "| build | workers | seconds | MB/s | peak RSS |"
echo "|---|---|---|---|---|"
for tok in byte gpt2; do
  args=(--tokenizer byte)
  [ $tok = gpt2 ] && args=(--tokenizer "$W/gpt2/tokenizer.json" --out-format megatron)
  for workers in 1 2; do
    out=$W/out_${tok}_$workers
    rm -rf "$out"
    /usr/bin/time -f "%e %M" -o "$W/time.txt" "$BIN" data build --input "$W/gcide.jsonl.zst" --out "$out" \
      --workers $workers "${args[@]}" > "$W/build.log" 2>&1 || { cat "$W/build.log" >&2; exit 1; }
    read -r secs kb < "$W/time.txt"
    echo "| $tok | $workers | $secs | $(python3 -c "print(f'{$text_mb / $secs:.1f}')") | $((kb / 1024)) MB |"
  done
  diff -r "$W/out_${tok}_1" "$W/out_${tok}_2" > /dev/null || { echo "FAIL: $tok: 1 and 2 workers differ" >&2; exit 1; }
done
echo "1 and 2 workers wrote the same bytes (byte and GPT-2)"
