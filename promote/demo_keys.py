"""The demo keys and trust roots `promote init` writes (ADR 10).

A new workspace gets one Ed25519 key per role in `.promote/keys/<role>.pem` (PKCS#8,
mode 0600, created with O_EXCL; the public half beside it as `<role>.pub`) and a
`control/promote/trust.json` that trusts their public halves, one signer per role
(`demo-builder`, `demo-checker`, `demo-runner`, `demo-admin`), each role's threshold
1. So `make demo` signs and verifies end to end. These keys are for trying it out:
docs/security.md says how to replace them with keys kept elsewhere.

Nothing is overwritten: an existing trust.json is kept as it is, and an existing key
file is reused for its role.
"""

from __future__ import annotations

from pathlib import Path

from cas.fsutil import atomic_write, makedirs_durable
from promote.attest.keys import (
    PrivateKey,
    load_private_key,
    new_key,
    public_pem,
    write_key_pair,
)
from promote.attest.trust import ROLES, TRUST_PATH, Signer, TrustedKey, TrustRoots
from promote.canonical import pretty

__all__ = ["KEYS_DIR", "key_path", "write_demo_trust"]

#: Where the demo keys live, relative to the workspace root (never tracked).
KEYS_DIR = ".promote/keys"


def key_path(root: Path, role: str) -> Path:
    """The demo private key of `role` in the workspace at `root`."""
    return root / KEYS_DIR / f"{role}.pem"


def write_demo_trust(root: Path) -> bool:
    """Write demo keys and the trust.json that trusts them, unless trust.json exists.

    Returns whether trust.json was written.

    Raises:
        InvalidKey: a key file that exists but is no usable key, or cannot be written.
    """
    trust_path = root / TRUST_PATH
    if trust_path.exists() or trust_path.is_symlink():
        return False
    keys_dir = root / KEYS_DIR
    makedirs_durable(keys_dir)
    keys_dir.chmod(0o700)
    signers = []
    for role in ROLES:
        path = key_path(root, role)
        key: PrivateKey
        if path.exists() or path.is_symlink():
            key = load_private_key(path)
        else:
            key = new_key("ed25519")
            write_key_pair(path, key)
        trusted = TrustedKey.from_pem(public_pem(key.public_key()).decode())
        signers.append(Signer(f"demo-{role}", (role,), (trusted,)))
    trust = TrustRoots(tuple(signers), {r: 1 for r in ROLES})
    makedirs_durable(trust_path.parent)
    atomic_write(trust_path, pretty(trust.to_dict()))
    return True
