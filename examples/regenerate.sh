#!/usr/bin/env bash
# Regenerate the repository's execution/ (the example's ledger and report) from the
# example, in a fresh temp directory. Same inputs, byte-identical outputs: the keys are
# the example's, derived from fixed seeds (examples/example-keys.sh).
# Usage: examples/regenerate.sh [DEST]   (default: the repository's execution/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/../execution}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash "$here/example-keys.sh" "$tmp/keys"
DEMO_KEYS="$tmp/keys" bash "$here/demo.sh" "$tmp/ws" >/dev/null
rm -rf "$dest/ledger" "$dest/promote"
mkdir -p "$dest/ledger/entries" "$dest/promote"
cp "$tmp/ws/execution/ledger/HEAD" "$dest/ledger/HEAD"
cp "$tmp/ws/execution/ledger/entries/"*.json "$dest/ledger/entries/"
cp "$tmp/ws/execution/promote/report.json" "$dest/promote/report.json"
chmod 644 "$dest/ledger/entries/"*.json
echo "regenerated $dest"
