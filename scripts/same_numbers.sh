#!/usr/bin/env bash
# Why: a restructuring must change no number. This trains the tiny MoE on the CPU with two moetrain
# binaries (before and after a change) as 1 process, as dp2 and as ep2 under mpirun, and compares
# every logged number but the timings (loss, balance loss, grad norm, lr, tokens, val loss, val BPC,
# expert load) bit for bit. Only the keys that the OLD binary's lines hold are compared (line by
# line), so that a NEW binary may add keys (e.g. the per-expert moe_* metrics) and still be identical.
#   scripts/same_numbers.sh OLD_MOETRAIN NEW_MOETRAIN [SCRATCH_DIR]
# Prints one line per layout, "identical" or the first differing line; exits 1 on any difference.
set -euo pipefail
OLD=$1
NEW=$2
TMP=${3:-$(mktemp -d)}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
mkdir -p "$TMP"
DS=$TMP/ds
if [ ! -f "$DS/index.json" ]; then
  { zcat /usr/share/dictd/gcide.dict.dz || true; } | head -c 1000000 > "$TMP/text.txt"
  "$OLD" data build --input "$TMP/text.txt" --out "$DS" --tokenizer byte --val-tokens 20000 > /dev/null
fi
SET=(--set data.train="$DS" --set data.val="$DS" --set model.seq_len=32 --set train.tokens=40960
     --set train.batch_size=16 --set train.micro_batch_size=4 --set train.warmup_iters=2
     --set eval.every=10 --set eval.tokens=4096 --set checkpoint.every=0 --set log.every=1)
MPI=(mpiexec --allow-run-as-root --oversubscribe)
# The numbers of a metrics.jsonl without the timing fields; with a second file (the old binary's),
# only the keys that its line of the same number holds.
numbers() { python3 -c '
import json, sys
old = [json.loads(l) for l in open(sys.argv[2])] if len(sys.argv) > 2 else None
for i, line in enumerate(open(sys.argv[1])):
    o = json.loads(line)
    for k in ("tok_per_s", "mfu", "time_s", "wall_s", "elapsed_s", "ms_per_step", "step_ms"):
        o.pop(k, None)
    if old is not None and i < len(old):
        o = {k: v for k, v in o.items() if k in old[i]}
    print(json.dumps(o, sort_keys=True))' "$@"; }
bad=0
for layout in single dp2 ep2; do
  case $layout in
    single) pre=(); extra=() ;;
    dp2) pre=("${MPI[@]}" -np 2); extra=() ;;
    ep2) pre=("${MPI[@]}" -np 2); extra=(--set parallel.ep=2) ;;
  esac
  for which in old new; do
    bin=$OLD; [ $which = new ] && bin=$NEW
    rm -rf "$TMP/$layout-$which"
    "${pre[@]}" "$bin" train manifests/examples/tiny_moe.json "${SET[@]}" "${extra[@]}" \
      --out "$TMP/$layout-$which" > "$TMP/$layout-$which.log" 2>&1 || { cat "$TMP/$layout-$which.log"; exit 1; }
  done
  numbers "$TMP/$layout-old/metrics.jsonl" > "$TMP/$layout-old.numbers"
  numbers "$TMP/$layout-new/metrics.jsonl" "$TMP/$layout-old/metrics.jsonl" > "$TMP/$layout-new.numbers"
  n=$(wc -l < "$TMP/$layout-new.numbers")
  bpc=$(grep -o '"val_bpc": [0-9.]*' "$TMP/$layout-new.numbers" | tail -1)
  if cmp -s "$TMP/$layout-old.numbers" "$TMP/$layout-new.numbers"; then
    echo "$layout: identical ($n lines, final $bpc)"
  else
    echo "$layout: DIFFERENT: $(diff "$TMP/$layout-old.numbers" "$TMP/$layout-new.numbers" | sed -n 2p)"
    bad=1
  fi
done
exit $bad
