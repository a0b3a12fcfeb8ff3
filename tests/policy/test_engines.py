"""One shared file of policy vectors, run against every engine that is available."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promote.policy.engines import Engine, OpaCliEngine, RegorusEngine, decide, load_bundle
from promote.policy.testing import OpaTester, RegorusTester, run_policy_tests

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]


# "opa" is `opa eval` run through the stand-in executable (real OPA v1.20.2, embedded:
# tests/policy/opa_standin.py), so no row is skipped for want of an opa binary.
ENGINES = ["regorus", "opa"]


@pytest.fixture
def make(opa_standin_binary: str) -> Any:
    def build(kind: str) -> Engine:
        return RegorusEngine() if kind == "regorus" else OpaCliEngine(opa_standin_binary)

    return build


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_default_policy_vectors(make: Any, kind: str, vector: dict[str, Any]) -> None:
    bundle = load_bundle(REPO / "control/policy")
    decision = decide(make(kind), bundle, vector["input"])
    assert decision.allow is vector["allow"]
    if vector["deny"]:
        assert list(decision.deny) == vector["deny"]
    if not vector["allow"]:
        assert decision.deny, "a deny always carries a reason"


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_regorus_and_real_opa_agree_on_decision_bytes(make: Any, vector: dict[str, Any]) -> None:
    """The decision record names its engine, but allow/deny are the same for both:
    regorus against real OPA v1.20.2 (through the `opa` stand-in), on every vector."""
    bundle = load_bundle(REPO / "control/policy")
    opa = decide(make("opa"), bundle, vector["input"])
    ref = decide(RegorusEngine(), bundle, vector["input"])
    assert (opa.engine, opa.engine_version) == ("opa", "1.20.2")
    assert (opa.allow, opa.deny, opa.policy, opa.input) == (
        ref.allow,
        ref.deny,
        ref.policy,
        ref.input,
    )


def test_policy_tests_agree_with_real_opa(opa_standin_binary: str) -> None:
    """`promote policy test`'s two runners, regorus and real OPA (`opa test` through the
    stand-in), give every shipped test the same status."""
    bundle = load_bundle(REPO / "promote/data/policy", tests=True)
    opa = run_policy_tests(OpaTester(opa_standin_binary), bundle)
    ref = run_policy_tests(RegorusTester(), bundle)
    assert (opa.engine, opa.engine_version) == ("opa", "1.20.2")
    assert opa.ok and ref.ok
    assert {r.ref: r.status for r in opa.results} == {r.ref: r.status for r in ref.results}
