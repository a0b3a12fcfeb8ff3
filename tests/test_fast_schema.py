"""The capsule's and the CHECK report's fast schema checks (promote.model) against
jsonschema itself: on generated valid documents and on mutations of them, the fast
check accepts exactly what the schema accepts, except the one thing it leaves to
jsonschema on purpose (a number written as a float, such as a size of 1.0), which it
refuses so that jsonschema decides. It never accepts what the schema refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mutations import has_float, mutated

from promote.errors import InvalidCapsule, InvalidDocument
from promote.model import (
    _capsule_ok,
    _check_report_ok,
    _validator,
    load_capsule,
    load_check_report,
)

CAPSULE = "promote_capsule.schema.json"
REPORT = "check_report.schema.json"

digests = st.binary(min_size=32, max_size=32).map(lambda b: "blake3:" + b.hex())
sizes = st.sampled_from([0, 1, 4096, 2**53 - 1]) | st.integers(0, 2**53 - 1)
paths = st.text(min_size=1, max_size=12)


def _target(draw: st.DrawFn) -> dict[str, Any]:
    t: dict[str, Any] = {"path": draw(paths)}
    if draw(st.booleans()):
        t["delete"] = True
    else:
        t["digest"], t["size"] = draw(digests), draw(sizes)
    if draw(st.booleans()):
        t["expect"] = draw(digests | st.just("absent"))
    return t


@st.composite
def capsules(draw: st.DrawFn) -> dict[str, Any]:
    v1 = draw(st.booleans())
    kind = None if v1 else draw(st.sampled_from([None, "release", "control"]))
    n = 0 if kind == "control" else draw(st.integers(1, 4))
    doc: dict[str, Any] = {"targets": [_target(draw) for _ in range(n)]}
    if v1:
        doc["schema"] = "promote-capsule/v1"
        doc["evidence"] = {"check_report": draw(digests)}
    else:
        doc["schema"] = "promote-capsule/v2"
        doc["evidence"] = {
            "attestations": draw(st.lists(digests, min_size=1, max_size=3, unique=True))
        }
        if kind is not None:
            doc["kind"] = kind
    if draw(st.booleans()):
        doc["base"] = draw(digests)
    if draw(st.booleans()):
        meta = {"builder": draw(st.text(max_size=8)), "source_revision": "v1"}
        doc["meta"] = {k: v for k, v in meta.items() if draw(st.booleans())}
    return doc


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "schema": "check-report/v1",
        "status": draw(st.sampled_from(["pass", "fail"])),
        "subjects": [
            {"digest": draw(digests), "size": draw(sizes)} for _ in range(draw(st.integers(0, 3)))
        ],
        "checks": [
            {"name": draw(st.text(min_size=1, max_size=8)), "status": s}
            for s in draw(st.lists(st.sampled_from(["pass", "fail", "skip"]), max_size=3))
        ],
    }


D = "blake3:" + "ab" * 32
#: What a mutation may put in place of a value: each is wrong somewhere, right elsewhere.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**53 - 1,
    2**53,
    "",
    "x",
    "x" * 257,
    "x" * 4097,
    "absent",
    "release",
    "control",
    "pass",
    "skip",
    "promote-capsule/v1",
    "promote-capsule/v2",
    "check-report/v1",
    D,
    D + "\n",
    D.upper(),
    D[:-1],
    "sha256:" + "ab" * 32,
    [],
    [D],
    [D, D],
    {},
    {"attestations": [D]},
    {"check_report": D},
    {"path": "p", "digest": D, "size": 1},
    {"path": "p", "delete": True},
    {"path": "p", "delete": True, "size": 1},
    {"path": "p"},
    1.0,  # valid as an integer to jsonschema: the fast check leaves it to jsonschema
    0.5,
]
KEYS = ["schema", "kind", "targets", "evidence", "base", "meta", "path", "digest", "size"]
KEYS += ["delete", "expect", "attestations", "check_report", "builder", "status", "name", "x"]


def _agrees(fast: bool, schema: str, doc: Any) -> None:
    valid = _validator(schema).is_valid(doc)
    assert not fast or valid, "the fast check accepted what the schema refuses"
    if not has_float(doc):
        assert fast == valid


def _v2_target(target: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "promote-capsule/v2", "targets": [target], "evidence": {"attestations": [D]}}


def _report(**parts: Any) -> dict[str, Any]:
    return {"schema": "check-report/v1", "status": "pass", "subjects": [], "checks": [], **parts}


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(capsules())
def test_valid_capsules_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert _validator(CAPSULE).is_valid(doc)
    assert _capsule_ok(doc)


@SETTINGS
@given(mutated(capsules(), KEYS, ODD))
@example({"schema": "promote-capsule/v2", "targets": [], "evidence": {"attestations": [D]}})
@example(
    {
        "schema": "promote-capsule/v2",
        "kind": "control",
        "targets": [{"path": "p", "delete": True}],
        "evidence": {"attestations": [D]},
    }
)
@example(
    {
        "schema": "promote-capsule/v2",
        "targets": [{"path": "p", "digest": D + "\n", "size": 1}],
        "evidence": {"attestations": [D, D]},
    }
)
@example(
    {
        "schema": "promote-capsule/v1",
        "kind": "release",
        "targets": [{"path": "p", "digest": D, "size": 1}],
        "evidence": {"check_report": D},
    }
)
@example(
    {
        "schema": "promote-capsule/v2",
        "targets": [{"path": "x" * 4097, "delete": True, "size": 1}],
        "evidence": {"attestations": [D]},
        "meta": {"builder": "x" * 257},
    }
)
@example(_v2_target({"path": "x" * 4097, "digest": D, "size": 1}))
@example(_v2_target({"path": "p", "delete": True, "size": 1}))
@example(_v2_target({"path": "p", "delete": True, "digest": D}))
@example(_v2_target({"path": "p", "digest": D, "size": 2**53}))
@example(_v2_target({"path": "p", "digest": D, "size": 1, "expect": "Absent"}))
@example({**_v2_target({"path": "p", "digest": D, "size": 1}), "meta": {"builder": "x" * 257}})
def test_capsule_fast_check_agrees_with_jsonschema(doc: Any) -> None:
    _agrees(_capsule_ok(doc), CAPSULE, doc)


@SETTINGS
@given(reports())
def test_valid_reports_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert _validator(REPORT).is_valid(doc)
    assert _check_report_ok(doc)


@SETTINGS
@given(mutated(reports(), KEYS, ODD))
@example({"schema": "check-report/v1", "status": "skip", "subjects": [], "checks": []})
@example({"schema": "check-report/v1", "status": "pass", "subjects": [], "checks": [], "x": 1})
@example(_report(subjects=[{"digest": D, "size": 2**53}]))
@example(_report(checks=[{"name": "x" * 257, "status": "pass"}]))
@example(_report(checks=[{"name": "", "status": "pass"}]))
@example(_report(checks=[{"name": "n", "status": "ok"}]))
def test_report_fast_check_agrees_with_jsonschema(doc: Any) -> None:
    _agrees(_check_report_ok(doc), REPORT, doc)


def test_a_float_size_is_left_to_jsonschema() -> None:
    """A size of 1.0 is an integer to JSON Schema: the fast check passes it on to
    jsonschema, which lets it through, and the model refuses it, as before."""
    doc = {
        "schema": "promote-capsule/v2",
        "targets": [{"path": "release/a", "digest": D, "size": 1.0}],
        "evidence": {"attestations": [D]},
    }
    assert not _capsule_ok(doc) and _validator(CAPSULE).is_valid(doc)
    with pytest.raises(InvalidCapsule, match=r"capsule: invalid size 1\.0"):
        load_capsule(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'{"schema":"promote-capsule/v2","evidence":{"attestations":["%s"]}}', "'targets'"),
        (b'{"schema":"promote-capsule/v2","targets":[],"evidence":{"attestations":["%s"]}}', "[]"),
        (
            b'{"schema":"promote-capsule/v2","targets":[{"path":"a"}],'
            b'"evidence":{"attestations":["%s"]}}',
            "'digest' is a required property",
        ),
    ],
    ids=["no-targets", "empty-release", "no-digest"],
)
def test_refusals_are_worded_by_jsonschema(data: bytes, words: str) -> None:
    with pytest.raises(InvalidCapsule, match="does not match its schema") as e:
        load_capsule(data.replace(b"%s", D.encode()))
    assert words in str(e.value)


def test_report_refusal_is_worded_by_jsonschema() -> None:
    with pytest.raises(InvalidDocument, match="'checks' is a required property"):
        load_check_report(b'{"schema":"check-report/v1","status":"pass","subjects":[]}')
