#!/usr/bin/env bash
# The end-to-end example on the embedded defaults (local store, embedded Rego engine):
#   put -> signed CHECK attestation -> capsule -> promote -> verify, twice; then the
#   refusals: an unsigned report, a report the builder signed itself, an uncovered target.
# Usage: examples/demo.sh [WORKSPACE]   (default: ./demo-workspace, recreated)
# With DEMO_KEYS=DIR, the workspace uses the private keys DIR/<role>.pem instead of
# fresh ones (examples/regenerate.sh does, so that its output is byte-identical).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ws="${1:-demo-workspace}"
rm -rf "$ws"
mkdir -p "$ws"
cd "$ws"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
CHECK=https://cas-promote.invalid/check-report/v1

# The CHECK phase's verdict, the predicate the checker signs (what it covers is the
# statement's subjects: the files given with --subject).
check_predicate() {  # STATUS
  printf '{"status":"%s","checks":[{"name":"unit-tests","status":"pass"},{"name":"licence-scan","status":"pass"}]}\n' "$1"
}

if [ -n "${DEMO_KEYS:-}" ]; then
  mkdir -p .promote/keys && chmod 700 .promote/keys
  cp "$DEMO_KEYS"/*.pem .promote/keys/ && chmod 600 .promote/keys/*.pem
fi

step "a workspace: config, default policy, trust roots and demo keys, store, ledger, view"
promote init .
ls .promote/keys/

step "the builder puts candidate artifacts into the store"
mkdir build
cp "$here/artifacts/app.txt" "$here/artifacts/libexample.so" build/
cas put build/app.txt build/libexample.so | tee put.out
app=$(sed -n 1p put.out | cut -d' ' -f1)
lib=$(sed -n 2p put.out | cut -d' ' -f1)

step "CHECK ran and passed: the checker signs that, about those exact bytes"
check_predicate pass > check.json
check=$(promote attest --key .promote/keys/checker.pem --predicate-type "$CHECK" \
  --subject build/app.txt --subject build/libexample.so check.json | cut -d' ' -f1)
promote attest verify "$check" --role checker

step "a capsule names only digests: the targets and the signed attestation"
promote capsule new --target "release/app.txt=$app" --target "release/lib/libexample.so=$lib" \
  --attestation "$check" --expect-current --base current \
  --builder demo --source-revision v1.0.0 -o capsule-1.json
cat capsule-1.json

step "promote: verify, check the signatures, ask the policy, commit, materialize"
promote --dry-run capsule-1.json >/dev/null
promote capsule-1.json
ls -l release/ release/lib/
cat release/app.txt

step "a forged CHECK report, unsigned (a v1 capsule), is refused (exit 4)"
printf 'never checked\n' > build/rogue.txt
rogue=$(cas put build/rogue.txt | cut -d' ' -f1)
rogue_size=$(cas stat "$rogue" | awk '{print $2}')
printf '{"schema":"check-report/v1","status":"pass","subjects":[{"digest":"%s","size":%s}],"checks":[{"name":"unit-tests","status":"pass"}]}\n' \
  "$rogue" "$rogue_size" > forged.json
forged=$(cas put forged.json | cut -d' ' -f1)
promote capsule new --target "release/rogue.txt=$rogue" --check-report "$forged" -o forged-1.json
set +e
promote forged-1.json
echo "exit code: $?"
set -e

step "the same report signed by the builder's own key is refused too (exit 4)"
self_signed=$(promote attest --key .promote/keys/builder.pem --predicate-type "$CHECK" \
  --subject build/rogue.txt check.json | cut -d' ' -f1)
promote capsule new --target "release/rogue.txt=$rogue" --attestation "$self_signed" -o forged-2.json
set +e
promote forged-2.json
echo "exit code: $?"
step "a signed CHECK that does not cover the target is refused (exit 4)"
promote capsule new --target "release/rogue.txt=$rogue" --attestation "$check" -o bad.json
promote bad.json
echo "exit code: $?"
set -e

step "a second release replaces one file"
cp "$here/artifacts/app-1.0.1.txt" build/
new=$(cas put build/app-1.0.1.txt | cut -d' ' -f1)
check_predicate pass > check-2.json
check2=$(promote attest --key .promote/keys/checker.pem --predicate-type "$CHECK" \
  --subject build/app-1.0.1.txt check-2.json | cut -d' ' -f1)
promote capsule new --target "release/app.txt=$new" --attestation "$check2" \
  --expect-current --base current --builder demo --source-revision v1.0.1 -o capsule-2.json
promote capsule-2.json
cat release/app.txt

step "the ledger, the pointers, the view and the evidence all check out"
# every entry re-justified: signed by the runner, its changes its capsule's targets,
# its evidence verified, and (--replay) the recorded policy gives the recorded decision
cas fsck
promote ledger verify --replay
promote verify
promote attest verify "$check2" --role checker

step "a receipt: the VSA, the entry, its inclusion proof and a signed checkpoint, in one file"
promote receipt release/app.txt -o receipt.json
promote ledger checkpoint  # the C2SP signed note (--json: the older JSON)

step "anyone verifies it offline: a fresh directory, the runner's public key, the artifact"
fresh="$(mktemp -d)"
cp receipt.json "$fresh/"
openssl pkey -in .promote/keys/runner.pem -pubout -out "$fresh/runner.pub"  # the public key only
cp release/app.txt "$fresh/app.txt"
(cd "$fresh" && promote verify-receipt receipt.json --key runner.pub --artifact app.txt)
rm -rf "$fresh"
