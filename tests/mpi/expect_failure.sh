#!/usr/bin/env bash
# Why: a failed rank must end the whole MPI job with a non-zero exit and a message, never a hang.
# Runs COMMAND under `timeout 60` and passes when it exits non-zero before the limit and every
# --expect pattern (an extended regex) appears in its output.
# Usage: expect_failure.sh --expect REGEX [--expect REGEX ...] -- COMMAND [ARGS...]
set -u
limit=60
patterns=()
while [[ $# -gt 0 && $1 != -- ]]; do
  case $1 in
    --expect) patterns+=("$2"); shift 2 ;;
    *) echo "expect_failure.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $# -gt 1 ]] || { echo "usage: expect_failure.sh --expect REGEX ... -- COMMAND..." >&2; exit 2; }
shift

start=$(date +%s%N)
out=$(timeout -k 10 "$limit" "$@" 2>&1)
rc=$?
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '%s\n' "$out"
echo "expect_failure.sh: exit code $rc after ${elapsed_ms} ms"

if (( rc == 124 || elapsed_ms >= limit * 1000 )); then
  echo "FAIL: the job was still running after ${limit} s (a hang)"
  exit 1
fi
if (( rc == 0 )); then
  echo "FAIL: the job exited 0 although a rank failed"
  exit 1
fi
for p in "${patterns[@]}"; do
  if ! grep -Eq -- "$p" <<<"$out"; then
    echo "FAIL: no line of the output matches '$p'"
    exit 1
  fi
done
echo "PASS: the job ended with exit code $rc in ${elapsed_ms} ms"
