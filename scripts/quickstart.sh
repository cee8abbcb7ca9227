#!/usr/bin/env bash
# Why: the first thing a new user runs (README): from a fresh checkout to the paper's comparison in
# miniature on this machine. It installs what is missing, builds, makes a byte-level dataset from the
# GNU Collaborative International Dictionary of English (Debian's dict-gcide), and trains a dense
# model and an MoE (1dense + shared expert, ra about 24%) with the same total parameters N and the same
# compute C on the same unique tokens D-hat (the MoE reuses them for about 4 epochs: reuse "strict"),
# then prints them side by side. On a 2-core CPU it takes about 10 minutes; with a GPU the CUDA
# backend is used. Re-running continues where it stopped (--resume auto) and skips finished runs.
#
# Usage: scripts/quickstart.sh [OUT_DIR]   (default runs/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quickstart}
JOBS=$(nproc)

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$JOBS" --target moetrain
BIN=build/moetrain

if [ ! -f data/gcide/index.json ]; then
  "$BIN" data build --input /usr/share/dictd/gcide.dict.dz --out data/gcide --tokenizer byte
fi

for run in dense moe; do
  manifest=manifests/quickstart/$run.json
  name=$(sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p;T;q' "$manifest")
  if [ -f "$OUT/$name/summary.json" ]; then
    echo "$name: already finished ($OUT/$name/summary.json)"
    continue
  fi
  "$BIN" train "$manifest" --out "$OUT/$name" --resume auto
done

python3 - "$OUT" << 'EOF'
import json, os, sys
out = sys.argv[1]
rows = []
for name in ("dense", "moe_1dense_se"):
    with open(os.path.join(out, name, "summary.json")) as f:
        rows.append(json.load(f))
cols = [("run", lambda s: s["name"]), ("N", lambda s: f"{s['n_params']:.3g}"),
        ("Na", lambda s: f"{s['n_active']:.3g}"), ("ra", lambda s: f"{100 * s['activation_rate']:.1f}%"),
        ("C (FLOPs)", lambda s: f"{s['compute']:.3g}"), ("D", lambda s: f"{s['tokens']:.3g}"),
        ("D-hat", lambda s: f"{s['unique_tokens']:.3g}"), ("epochs", lambda s: f"{s['epochs']:.2f}"),
        ("val BPC", lambda s: f"{s['val_bpc']:.4f}"), ("wall", lambda s: f"{s['wall_seconds']:.0f} s")]
cells = [[c[0] for c in cols]] + [[c[1](s) for c in cols] for s in rows]
width = [max(len(r[i]) for r in cells) for i in range(len(cols))]
print()
print(" | ".join(h.ljust(w) for h, w in zip(cells[0], width)))
print("-+-".join("-" * w for w in width))
for r in cells[1:]:
    print(" | ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, width))))
d, m = rows
verdict = "beats" if m["val_bpc"] < d["val_bpc"] else "does not beat"
print(f"\nAt equal N, C and unique data, the MoE {verdict} the dense model: "
      f"val BPC {m['val_bpc']:.4f} vs {d['val_bpc']:.4f} ({m['val_bpc'] - d['val_bpc']:+.4f}).")
EOF
