"""Keys and trust roots for the attestation tests: real keys, generated per test."""

from __future__ import annotations

import pytest

from promote.attest.keys import PrivateKey, new_key


@pytest.fixture(params=["ed25519", "ecdsa-p256"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ed() -> PrivateKey:
    return new_key("ed25519")


@pytest.fixture
def ec() -> PrivateKey:
    return new_key("ecdsa-p256")
