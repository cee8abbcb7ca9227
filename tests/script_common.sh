# Why: the start that every tests/scripted/*.sh shares, once: strict mode, the moetrain binary ($1) and
# a fresh scratch folder ($2), both as absolute paths, fail() and a trap that names the failing line.
# First line of a scripted test: source "$(dirname "$0")/../script_common.sh" "$@"
set -euo pipefail
BIN=$(realpath "$1")
TMP=$2
rm -rf "$TMP" && mkdir -p "$TMP"
TMP=$(realpath "$TMP")
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

# DIR/text.txt, the first BYTES of the GNU dictionary (dict-gcide, installed by scripts/setup.sh), and
# DIR/ds built from it with byte tokens and VAL_TOKENS validation tokens (default 8192): the tiny real
# dataset of the scripted tests, built in one way.
dict_dataset() {
  local dir=$1 bytes=$2 val=${3:-8192}
  { zcat /usr/share/dictd/gcide.dict.dz || true; } | head -c "$bytes" > "$dir/text.txt"
  [ -s "$dir/text.txt" ] || fail "no text from /usr/share/dictd/gcide.dict.dz (scripts/setup.sh installs dict-gcide)"
  "$BIN" data build --input "$dir/text.txt" --out "$dir/ds" --tokenizer byte --val-tokens "$val" > /dev/null
}
