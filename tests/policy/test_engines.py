"""One shared file of policy vectors, run against every engine that is available."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from promote.policy.engines import Engine, OpaCliEngine, RegorusEngine, decide, load_bundle

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]


def engines() -> list[Any]:
    opa = shutil.which("opa")
    return [
        pytest.param("regorus", id="regorus"),
        pytest.param(
            "opa",
            id="opa",
            marks=pytest.mark.skipif(
                opa is None,
                reason="no opa binary on PATH (a real OPA is optional; install it to run these)",
            ),
        ),
    ]


def make(kind: str) -> Engine:
    return RegorusEngine() if kind == "regorus" else OpaCliEngine()


@pytest.mark.parametrize("kind", engines())
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_default_policy_vectors(kind: str, vector: dict[str, Any]) -> None:
    bundle = load_bundle(REPO / "control/policy")
    decision = decide(make(kind), bundle, vector["input"])
    assert decision.allow is vector["allow"]
    if vector["deny"]:
        assert list(decision.deny) == vector["deny"]
    if not vector["allow"]:
        assert decision.deny, "a deny always carries a reason"


@pytest.mark.parametrize("kind", engines())
def test_engines_agree_on_decision_bytes(kind: str) -> None:
    """The decision record names its engine, but allow/deny are the same for all."""
    bundle = load_bundle(REPO / "control/policy")
    decision = decide(make(kind), bundle, VECTORS[1]["input"])
    ref = decide(RegorusEngine(), bundle, VECTORS[1]["input"])
    assert (decision.allow, decision.deny, decision.policy, decision.input) == (
        ref.allow,
        ref.deny,
        ref.policy,
        ref.input,
    )
