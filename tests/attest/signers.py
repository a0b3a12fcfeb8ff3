"""Trust roots for the attestation tests, built from real keys."""

from __future__ import annotations

from collections.abc import Iterable

from promote.attest.keys import PrivateKey, public_pem
from promote.attest.trust import ROLES, Signer, TrustedKey, TrustRoots


def signer(name: str, roles: Iterable[str], *keys: PrivateKey) -> Signer:
    return Signer(
        name,
        tuple(roles),
        tuple(TrustedKey.from_pem(public_pem(k.public_key()).decode()) for k in keys),
    )


def trust_of(*signers: Signer, **thresholds: int) -> TrustRoots:
    return TrustRoots(tuple(signers), {r: thresholds.get(r, 1) for r in ROLES})
