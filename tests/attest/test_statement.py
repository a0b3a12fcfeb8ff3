"""in-toto Statement v1: what is accepted, and each way a statement is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cas.errors import EXIT_USAGE
from promote.attest.dsse import Envelope
from promote.attest.errors import InvalidEnvelope, InvalidStatement
from promote.attest.statement import (
    CHECK_PREDICATE,
    MAX_PREDICATE_DEPTH,
    MAX_STATEMENT,
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    TEST_RESULT_PREDICATE,
    Statement,
    Subject,
    load_statement,
    statement_of,
)
from promote.canonical import canonical

B3 = "16082644" + "0" * 56
SHA = "ab" * 32


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "app.txt", "digest": {"blake3": B3, "sha256": SHA}}],
        "predicateType": CHECK_PREDICATE,
        "predicate": {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]},
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def test_a_statement_round_trips() -> None:
    st = load_statement(json.dumps(doc()).encode())
    assert st.subjects == (Subject("app.txt", (("blake3", B3), ("sha256", SHA))),)
    assert st.subjects[0].digests == {"blake3": B3, "sha256": SHA}
    assert st.predicate_type == CHECK_PREDICATE
    assert st.to_dict() == doc()
    assert load_statement(st.encode()) == st
    assert st.encode() == canonical(doc())


def test_the_predicate_type_constants() -> None:
    assert CHECK_PREDICATE.startswith("https://")
    assert TEST_RESULT_PREDICATE == "https://in-toto.io/attestation/test-result/v0.1"
    st = load_statement(json.dumps(doc(predicateType=TEST_RESULT_PREDICATE)).encode())
    assert st.predicate_type == TEST_RESULT_PREDICATE


def _nested(depth: int) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for _ in range(depth - 1):
        d = {"a": d}
    return d


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (doc(_type="https://in-toto.io/Statement/v0.1"), "_type must be"),
        (doc(extra=1), "want exactly the fields"),
        (doc(predicate=None), "want exactly the fields"),
        (doc(subject=[]), "want a list of 1 to"),
        (doc(subject={"name": "a"}), "want a list of 1 to"),
        (doc(subject=[{"name": "a"}]), "want exactly the fields name, digest"),
        (
            doc(subject=[{"name": "a", "digest": {"blake3": B3}, "uri": "x"}]),
            "want exactly the fields",
        ),
        (doc(subject=[{"name": "", "digest": {"blake3": B3}}]), "name must be a string"),
        (doc(subject=[{"name": 1, "digest": {"blake3": B3}}]), "name must be a string"),
        (doc(subject=[{"name": "a", "digest": {}}]), "digest must be a non-empty object"),
        (doc(subject=[{"name": "a", "digest": {"sha512": "ab" * 64}}]), "'sha512' not allowed"),
        (doc(subject=[{"name": "a", "digest": {"sha256": SHA.upper()}}]), "64 lowercase hex"),
        (doc(subject=[{"name": "a", "digest": {"sha256": SHA[:-1]}}]), "64 lowercase hex"),
        (doc(subject=[{"name": "a", "digest": {"blake3": "g" * 64}}]), "64 lowercase hex"),
        (doc(subject=[{"name": "a", "digest": {"blake3": 7}}]), "64 lowercase hex"),
        (doc(predicateType="check-report"), "predicateType must be an absolute URI"),
        (doc(predicateType="https://x y"), "predicateType must be an absolute URI"),
        (doc(predicate=[1]), "predicate must be an object"),
        (doc(predicate=_nested(MAX_PREDICATE_DEPTH + 1)), "predicate nested deeper than 32"),
    ],
)
def test_malformed_statements_are_refused(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidStatement, match=message) as e:
        load_statement(json.dumps(bad).encode())
    assert e.value.exit_code == EXIT_USAGE


def test_the_deepest_predicate_allowed_is_accepted() -> None:
    load_statement(json.dumps(doc(predicate=_nested(MAX_PREDICATE_DEPTH))).encode())


def test_huge_or_deep_documents_are_refused_before_parsing() -> None:
    huge = json.dumps(doc(predicate={"blob": "x" * MAX_STATEMENT})).encode()
    with pytest.raises(InvalidStatement, match="larger than"):
        load_statement(huge)
    with pytest.raises(InvalidStatement, match="nested deeper than 64"):
        load_statement(b"[" * 200 + b"]" * 200)
    with pytest.raises(InvalidStatement, match="duplicate key"):
        load_statement(b'{"_type": "a", "_type": "b"}')


def test_build_validates_like_parsing() -> None:
    subject = Subject("a", (("blake3", B3),))
    assert Statement.build([subject], CHECK_PREDICATE, {"k": 1}).subjects == (subject,)
    with pytest.raises(InvalidStatement, match="want a list of 1 to"):
        Statement.build([], CHECK_PREDICATE, {})
    with pytest.raises(InvalidStatement, match="larger than"):
        Statement.build([subject], CHECK_PREDICATE, {"blob": "x" * MAX_STATEMENT})


def test_statement_of_wants_the_in_toto_payload_type() -> None:
    payload = canonical(doc())
    assert statement_of(Envelope(PAYLOAD_TYPE, payload)).predicate_type == CHECK_PREDICATE
    with pytest.raises(InvalidEnvelope, match="payloadType 'application/json'") as e:
        statement_of(Envelope("application/json", payload))
    assert e.value.exit_code == EXIT_USAGE
