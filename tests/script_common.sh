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
