#!/usr/bin/env bash
# The end-to-end example on the embedded defaults: put -> cat -> fsck.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ws="${DEMO_DIR:-$here/../demo-workspace}"
rm -rf "$ws"
mkdir -p "$ws"
cd "$ws"
set -x
cas init
cas put "$here/artifacts/app.txt"
digest=$(cas put "$here/artifacts/app.txt" | cut -d' ' -f1)
cas cat "$digest"
cas fsck
