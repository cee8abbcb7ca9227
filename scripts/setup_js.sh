#!/usr/bin/env bash
# Why: tests/test_data_tokenizer.cpp compares our BPE with an independent JavaScript encoder
# (gpt-tokenizer, pinned in tests/js/package.json). This installs it into tests/js/node_modules once;
# later runs find it and do nothing. Without node, npm or the registry it warns and exits 0: the
# comparison tests then say SKIPPED instead of failing.
set -uo pipefail
cd "$(dirname "$0")/../tests/js"
want=$(sed -n 's/.*"gpt-tokenizer": *"\([^"]*\)".*/\1/p' package.json)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p;T;q' node_modules/gpt-tokenizer/package.json 2>/dev/null)
if [ -n "$have" ] && [ "$have" = "$want" ]; then
  echo "setup_js: gpt-tokenizer $have present"
  exit 0
fi
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "setup_js: WARN: node/npm not found: the BPE reference tests will be skipped" >&2
  exit 0
fi
echo "setup_js: installing gpt-tokenizer $want into tests/js/node_modules"
if ! npm install --no-package-lock --no-audit --no-fund --loglevel=error; then
  echo "setup_js: WARN: npm install failed (no registry?): the BPE reference tests will be skipped" >&2
fi
exit 0
