"""Regorus and real OPA v1.20.2 decide alike: the vectors, and mutants of them.

The policy is the workspace default (`promote/data/policy`, what `promote init` lays
out), read when the test runs; the seeds are the inputs of tests/policy/vectors.json.
Hypothesis mutates them (a field removed, set to null, given another type, a number
written as a string, a list emptied or an element repeated, an unknown key added), one
to three mutations each, deterministically (`derandomize=True`), and every input is
decided by both engines as the gate asks them: the rules `data.promote.allow` and
`data.promote.deny`, read by the gate's own `_verdict`. A few inputs that are not even an
object (`NOT_OBJECTS`) are decided too.

Regorus runs as the gate runs it (`promote.policy.regorus_child.evaluate`, in this
process rather than a child, to be fast); OPA runs in-process through PyPI
`opa-golib-python-bindings` 0.4.4, whose bridge evaluates with strict built-in errors
only, as every engine of the gate now does. Anything must match exactly: allow, and
every deny reason. The default policy is total (type guards, control/policy/promote.rego),
so neither engine may raise on any input either: with no built-in error in strict mode,
OPA's non-strict mode (a built-in error is undefined) decides the same, so both modes
are covered although the bindings run only the strict one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promote.canonical import canonical
from promote.policy.engines import (
    OpaCliEngine,
    RegorusEngine,
    _verdict,
    check_input,
    decide,
    load_bundle,
    rule_queries,
)
from promote.policy.regorus_child import evaluate as regorus_evaluate

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "promote/data/policy"
SEEDS = [
    v["input"] for v in json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]
]
GENERATED = 2_000  # distinct mutants at least, besides the seeds
#: Inputs that are not even an object (the mutants change what is below the root).
NOT_OBJECTS: list[Any] = [None, True, 0, 1.5, "", "release/app.whl", [], [{}], {}]

Outcome = tuple[Any, ...]


class Both:
    """The two engines, loaded once with the workspace default policy."""

    def __init__(self) -> None:
        from opa_bindings import OpaEngine

        self.bundle = load_bundle(POLICY)
        self.queries = rule_queries(self.bundle.package)
        self.opa = OpaEngine()
        for name, text in sorted(self.bundle.files.items()):
            self.opa.add_policy(name, text)

    def regorus(self, doc: Any) -> Outcome:
        request = {
            "files": dict(self.bundle.files),
            "queries": list(self.queries),
            "input": canonical(doc).decode(),
        }
        answer = regorus_evaluate(request)
        if "error" in answer:
            return ("error", answer["error"])
        value = {
            k: v for k, v in zip(("allow", "deny"), answer["values"], strict=True) if v is not None
        }
        return ("decision", *_verdict(value))

    def real_opa(self, doc: Any) -> Outcome:
        from opa_bindings import OpaError

        value: dict[str, Any] = {}
        try:
            for key, query in zip(("allow", "deny"), self.queries, strict=True):
                rows = self.opa.eval_query(f"__value := {query}", input=doc)
                if rows:
                    value[key] = rows[0]["__value"]
        except OpaError as e:
            return ("error", f"{e.code}: {e.message.splitlines()[0]}")
        return ("decision", *_verdict(value))


def agree(a: Outcome, b: Outcome) -> bool:
    """The same decision, and no error: the default policy raises on no input."""
    return a == b and a[0] == "decision"


def kind_of(a: Outcome, b: Outcome) -> str:
    """A short name for a difference, to count them by kind."""

    def side(o: Outcome) -> str:
        if o[0] == "error":
            text = re.sub(r"^\S+:\d+(:\d+)?: ", "", str(o[1]))  # drop the location
            what = re.split(r"\. Got | but got |: operand", text)[0][:60]
            return f"error ({what})"
        return "allow" if o[1] else "deny"

    sa, sb = side(a), side(b)
    if a == b:
        return f"both {sa}"
    if sa == sb:
        return f"both {sa}, other reasons"
    return f"regorus {sa} / opa {sb}"


# -- mutants -------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["pass", "fail", "skip", "PASS", "", "release/", "release/app.whl"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
)
MUTATIONS = ["delete", "null", "value", "stringify", "empty", "repeat", "extra-key"]


def _slots(doc: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every value below the root."""
    stack = [doc]
    while stack:
        node = stack.pop()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, value in list(items):
            yield node, key
            if isinstance(value, dict | list):
                stack.append(value)


@st.composite
def mutants(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(doc))
        if not slots:
            break
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        value = container[key]
        how = draw(st.sampled_from(MUTATIONS))
        if how == "delete":
            del container[key]
        elif how == "null":
            container[key] = None
        elif how == "value":
            container[key] = draw(VALUES)
        elif how == "stringify":
            container[key] = json.dumps(value) if not isinstance(value, str) else 0
        elif how == "empty":
            container[key] = (
                {} if isinstance(value, dict) else [] if isinstance(value, list) else ""
            )
        elif how == "repeat" and isinstance(value, list) and value:
            value.append(copy.deepcopy(value[0]))
        elif how == "extra-key" and isinstance(value, dict):
            value[draw(st.text(max_size=4))] = draw(SCALARS)
        else:
            container[key] = draw(VALUES)
    return doc


def compare_all() -> tuple[int, list[tuple[str, Any, Outcome, Outcome]]]:
    """(distinct inputs compared, differences as (kind, input, regorus, opa))."""
    both = Both()
    seen: set[bytes] = set()
    differences: list[tuple[str, Any, Outcome, Outcome]] = []

    def one(doc: Any) -> None:
        key = canonical(doc)
        if key in seen:
            return
        check_input(doc)  # the gate refuses integers past 2^53 before any engine sees them
        seen.add(key)
        a, b = both.regorus(doc), both.real_opa(doc)
        if not agree(a, b):
            differences.append((kind_of(a, b), doc, a, b))

    for seed in SEEDS:
        one(seed)
    for doc in NOT_OBJECTS:
        one(doc)

    @settings(
        max_examples=int(GENERATED * 1.3),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutants())
    def generated(doc: Any) -> None:
        one(doc)

    # Hypothesis mixes into its draws constants it collects from every local module
    # imported so far, so the inputs would depend on which tests ran before. Without
    # them, the same inputs every run. (Internal API: skipped if it moves.)
    from hypothesis.internal.conjecture import providers

    with contextlib.ExitStack() as stack:
        if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
            no_constants = providers.Constants()
            stack.enter_context(
                mock.patch.object(providers, "_get_local_constants", lambda: no_constants)
            )
        generated()
    return len(seen), differences


def _report(compared: int, differences: list[tuple[str, Any, Outcome, Outcome]]) -> str:
    kinds = Counter(kind for kind, *_ in differences)
    lines = [f"{len(differences)} of {compared} inputs decided differently:"]
    lines += [f"  {n:5d}  {kind}" for kind, n in kinds.most_common()]
    shown: set[str] = set()
    for kind, _doc, a, b in differences:
        if kind not in shown:
            shown.add(kind)
            lines.append(f"  e.g. {kind}:\n    regorus {a}\n    opa     {b}")
    return "\n".join(lines)


def test_regorus_and_real_opa_decide_alike() -> None:
    compared, differences = compare_all()
    assert compared >= len(SEEDS) + len(NOT_OBJECTS) + GENERATED, compared
    assert not differences, _report(compared, differences)


def test_the_harness_decides_as_the_gates_engines(opa_standin_binary: str) -> None:
    """The in-process shortcuts above give, on every seed, the decisions of the engines
    the gate builds: regorus in its child process, `opa eval` (the stand-in, real OPA)."""
    both = Both()
    for seed in SEEDS:
        for mine, engine in (
            (both.regorus(seed), RegorusEngine()),
            (both.real_opa(seed), OpaCliEngine(opa_standin_binary)),
        ):
            decision = decide(engine, both.bundle, seed)
            if mine[0] == "error":
                assert decision.allow is False
                assert decision.deny[0].startswith("policy engine error: ")
            else:
                assert (decision.allow, decision.deny) == mine[1:]
