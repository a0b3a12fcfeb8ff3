#!/usr/bin/env bash
# Write the example's private keys, DIR/<role>.pem for builder, checker, runner and
# admin, derived from fixed seeds: so that examples/regenerate.sh gives byte-identical
# output. They are public example keys: never trust them anywhere.
# Usage: examples/example-keys.sh DIR   (then: DEMO_KEYS=DIR examples/demo.sh)
set -euo pipefail
mkdir -p "$1"
python3 - "$1" <<'PY'
import hashlib
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

for role in ("builder", "checker", "runner", "admin"):
    seed = hashlib.sha256(f"cas-promote example key: {role}".encode()).digest()
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = Path(sys.argv[1], f"{role}.pem")
    path.write_bytes(pem)
    path.chmod(0o600)
PY
