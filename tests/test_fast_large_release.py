"""A release of more objects than one in-toto statement may name (ADR 16): its VSA
names the pointer state after it, as a delete-only release's does; up to the limit,
it names every target."""

from __future__ import annotations

from typing import Any

from promote.attest.statement import MAX_SUBJECTS
from promote.vsa import STATE_SUBJECT, vsa_subjects

D = "blake3:" + "ab" * 32
STATE = {"digest": "blake3:" + "cd" * 32, "size": 10}


def _doc(n: int) -> dict[str, Any]:
    changes = [
        {"path": f"release/{i:05d}", "from": None, "to": {"digest": D, "size": 1}} for i in range(n)
    ]
    return {"changes": changes, "state_after": STATE, "policy": STATE, "trust": STATE}


def test_up_to_the_limit_every_target_is_a_subject() -> None:
    subjects = vsa_subjects(_doc(MAX_SUBJECTS))
    assert [s.name for s in subjects] == [f"release/{i:05d}" for i in range(MAX_SUBJECTS)]


def test_past_the_limit_the_state_is_the_subject() -> None:
    [only] = vsa_subjects(_doc(MAX_SUBJECTS + 1))
    assert only.name == STATE_SUBJECT
    assert str(only.ref.digest) == STATE["digest"] and only.ref.size == STATE["size"]
