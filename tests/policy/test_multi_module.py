"""The default policy stays right when package `promote` spans several files.

regorus 0.13 mis-evaluates a rule read through the package document (`data.promote`)
when the package spans several modules and the rule refers to one defined after it:
a helper module whose name sorts before `promote.rego` made every complete-evidence
promotion deny. The engines ask the rules `data.promote.allow` and `data.promote.deny`
instead; these tests add modules whose names sort before and after `promote.rego`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promote.policy.engines import PolicyBundle, RegorusEngine, decide, load_bundle
from promote.policy.testing import RegorusTester, run_policy_tests

REPO = Path(__file__).resolve().parents[2]
VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]

HELPER = """package promote
import rego.v1

# A helper of the same package that reads the set helper of promote.rego. Total, as
# promote.rego is: regorus evaluates it under the tests' `with input as` too, so a
# built-in error here on a malformed test input would fail promote.rego's tests.
subject_count := count(checked)

release_paths contains target.path if {
\tsome target in targets
\tis_string(target.path)
\tstartswith(target.path, "release/")
}
"""

# Names that sort before and after "promote.rego", at the top and in a sub-directory.
EXTRA = ["aaa_helpers.rego", "lib/helpers.rego", "promote_extra.rego", "zzz_helpers.rego"]


def with_module(name: str, tests: bool = False) -> PolicyBundle:
    bundle = load_bundle(REPO / "control/policy", tests=tests)
    assert name not in bundle.files
    return PolicyBundle({**bundle.files, name: HELPER}, bundle.package)


@pytest.mark.parametrize("extra", EXTRA)
@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vectors_with_an_extra_module(extra: str, vector: dict[str, Any]) -> None:
    decision = decide(RegorusEngine(), with_module(extra), vector["input"])
    assert decision.allow is vector["allow"]
    if vector["deny"]:
        assert list(decision.deny) == vector["deny"]


@pytest.mark.parametrize("extra", EXTRA)
def test_policy_tests_pass_with_an_extra_module(extra: str) -> None:
    """`promote.allow with input as ...` in a test meets the same regorus bug unless
    every rule of promote.rego is defined before the rules that use it."""
    run = run_policy_tests(RegorusTester(), with_module(extra, tests=True))
    assert run.ok, [r.to_dict() for r in run.results if r.status != "pass"]
    assert run.count("pass") == len(run.results)


def test_the_set_helper_is_what_is_evaluated() -> None:
    """The shipped policy looks targets up in a set of checked pairs (no N x M scan)."""
    text = (REPO / "control/policy/promote.rego").read_text()
    assert "covered(target) if [target.path, target.digest, target.size] in checked" in text
    complete = VECTORS[0]
    assert complete["allow"] is True
    for extra in EXTRA:
        assert decide(RegorusEngine(), with_module(extra), complete["input"]).allow is True
