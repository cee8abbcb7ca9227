# Why: two independent `moetrain` processes on one machine divide its cores (engine/cpu/threads.h)
# instead of running twice as many OpenMP threads as cores (~100x slower). A long tiny training run
# starts alone with every core; a `moetrain bench` started beside it starts with half; the run drops to
# half within its next re-check, logs it, and takes the cores back once the bench has ended (the run
# is long enough for any machine, 100 epochs of 1M tokens, and is stopped by SIGTERM). The
# registry is a private folder (MOETRAIN_CORE_REGISTRY), so other tests' processes do not count.
# Usage: shared_cores.sh MOETRAIN SCRATCH_DIR. Needs two cores (exit 77, skipped, on one).
source "$(dirname "$0")/../script_common.sh" "$@"

unset OMP_NUM_THREADS   # the default thread count is what is tested
CORES=$(nproc)
[ "$CORES" -ge 2 ] || { echo "one core: nothing to divide (skipped)"; exit 77; }
HALF=$((CORES / 2))
export MOETRAIN_CORE_REGISTRY="$TMP/registry"
plural() { [ "$1" = 1 ] && echo "$1 $2" || echo "$1 $2s"; }

dict_dataset "$TMP" 1200000
cat > "$TMP/m.json" << 'JSON'
{
  "name": "shared",
  "model": {"vocab_size": 256, "d_model": 48, "n_layers": 3, "n_heads": 3, "head_dim": 16, "d_ffn": 128, "seq_len": 32,
            "moe": {"layout": "1dense", "n_experts": 8, "top_k": 2, "d_expert": 48, "d_shared": 96}},
  "train": {"tokens": 100000000, "batch_size": 8, "micro_batch_size": 8, "lr": 3e-3, "warmup_iters": 2, "seed": 1},
  "data": {"train": "ds", "val": "ds", "reuse": "strict", "unique_tokens": 1000000},
  "eval": {"every": 0, "tokens": 1024},
  "checkpoint": {"every": 0, "keep": 1},
  "log": {"every": 1000}
}
JSON

# Waits up to $2 seconds for the pattern $3 (fixed string) in file $1.
wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    grep -qF -- "$3" "$1" 2> /dev/null && return 0
    kill -0 "$A" 2> /dev/null || fail "the run ended before '$3' appeared: $(cat "$TMP/a.log")"
    sleep 0.1
  done
  fail "no '$3' in $1 after $2 s: $(cat "$1")"
}

"$BIN" train "$TMP/m.json" --out "$TMP/run" > "$TMP/a.log" 2>&1 &
A=$!
trap 'kill -9 $A 2> /dev/null || true' EXIT
wait_for "$TMP/a.log" 120 "step 1/"
grep -qF "cpu, $(plural "$CORES" thread) ($CORES cores, 1 process: cores / processes)" "$TMP/a.log" ||
  fail "the run did not start with every core: $(head -3 "$TMP/a.log")"

"$BIN" bench "$TMP/m.json" --steps 400 --warmup 50 > "$TMP/b.log" 2>&1 || fail "bench failed: $(cat "$TMP/b.log")"
grep -qF "on cpu, $(plural "$HALF" thread) ($CORES cores, 2 processes: cores / processes)" "$TMP/b.log" ||
  fail "the bench beside the run did not start with half the cores: $(head -2 "$TMP/b.log")"
grep -qF "cpu: now $(plural "$HALF" thread) ($CORES cores, 2 processes: cores / processes)" "$TMP/a.log" ||
  fail "the run did not give up cores while the bench ran: $(cat "$TMP/a.log")"

wait_for "$TMP/a.log" 60 "cpu: now $(plural "$CORES" thread) ($CORES cores, 1 process: cores / processes)"
kill -TERM "$A"
rc=0
wait "$A" || rc=$?
[ "$rc" = 3 ] || fail "SIGTERM: exit $rc, expected 3 (checkpoint and stop)"
trap - EXIT
[ -z "$(ls "$TMP/registry")" ] || fail "files left in the registry: $(ls "$TMP/registry")"
echo "ok: alone $CORES threads; beside a bench $HALF; back to $CORES after it"
