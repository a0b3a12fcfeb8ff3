#!/usr/bin/env bash
# The end-to-end example on the embedded defaults (local store, embedded Rego engine):
#   put -> CHECK report -> capsule -> promote -> fsck -> verify, twice, then a denial.
# Usage: examples/demo.sh [WORKSPACE]   (default: ./demo-workspace, recreated)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ws="${1:-demo-workspace}"
rm -rf "$ws"
mkdir -p "$ws"
cd "$ws"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The CHECK phase's report, as the checker would write it.
check_report() {  # STATUS DIGEST SIZE [DIGEST SIZE ...]
  local status=$1; shift
  local subjects=""
  while [ $# -gt 0 ]; do
    subjects="$subjects${subjects:+,}{\"digest\":\"$1\",\"size\":$2}"; shift 2
  done
  printf '{"schema":"check-report/v1","status":"%s","subjects":[%s],"checks":[{"name":"unit-tests","status":"pass"},{"name":"licence-scan","status":"pass"}]}\n' "$status" "$subjects"
}

step "a workspace: config, default policy, store, ledger, empty view"
promote init .

step "the builder puts candidate artifacts into the store"
cas put "$here/artifacts/app.txt" "$here/artifacts/libexample.so" | tee put.out
app=$(sed -n 1p put.out | cut -d' ' -f1);  app_size=$(sed -n 1p put.out | awk '{print $2}')
lib=$(sed -n 2p put.out | cut -d' ' -f1);  lib_size=$(sed -n 2p put.out | awk '{print $2}')

step "CHECK ran and passed: its report goes into the store too"
check_report pass "$app" "$app_size" "$lib" "$lib_size" > check.json
check=$(cas put check.json | cut -d' ' -f1)

step "a capsule names only digests"
promote capsule new --target "release/app.txt=$app" --target "release/lib/libexample.so=$lib" \
  --check-report "$check" --expect-current --base current \
  --builder demo --source-revision v1.0.0 -o capsule-1.json
cat capsule-1.json

step "promote: verify, ask the policy, commit, materialize"
promote --dry-run capsule-1.json >/dev/null
promote capsule-1.json
ls -l release/ release/lib/
cat release/app.txt

step "a capsule whose CHECK report does not cover its target is refused (exit 3)"
rogue=$(printf 'never checked\n' | cas put - | cut -d' ' -f1)
promote capsule new --target "release/rogue.txt=$rogue" --check-report "$check" -o bad.json
set +e
promote bad.json
echo "exit code: $?"
set -e

step "a second release replaces one file"
new=$(cas put "$here/artifacts/app-1.0.1.txt" | cut -d' ' -f1)
new_size=$(cas stat "$new" | awk '{print $2}')
check_report pass "$new" "$new_size" > check-2.json
check2=$(cas put check-2.json | cut -d' ' -f1)
promote capsule new --target "release/app.txt=$new" --check-report "$check2" \
  --expect-current --base current --builder demo --source-revision v1.0.1 -o capsule-2.json
promote capsule-2.json
cat release/app.txt

step "the ledger, the pointers and the view all check out"
cas fsck
promote ledger verify
promote verify
