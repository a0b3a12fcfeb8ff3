"""A release of more objects than one in-toto statement may name (ADR 16): its VSA
names the pointer state after it, as a delete-only release's does; up to the limit,
it names every target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import Flow

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


def test_an_entry_readers_would_refuse_is_refused_before_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's readers accept documents up to MAX_DOCUMENT: a promotion whose
    input, entry or state is larger is refused (exit 2) and commits nothing, instead
    of writing what `promote verify` cannot read. (The limit is lowered here so that a
    small release crosses it.)"""
    from promote import gate
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    flow = Flow.init(tmp_path / "ws")
    ref = flow.put(b"app 1.0.0\n")
    capsule = flow.capsule({"release/app.txt": ref[0]}, flow.check([ref]))
    ws = Workspace.find(flow.root)
    ledger = open_ledger(ws)
    planned = gate.promote(ws, ledger, str(capsule), dry_run=True)
    assert planned.exit_code == 0 and planned.entry is not None
    monkeypatch.setattr(gate, "MAX_DOCUMENT", 500)  # below the input's and the entry's size
    outcome = gate.promote(ws, ledger, str(capsule))
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert "of this promotion would be" in outcome.reasons[0]
    assert ledger.head().seq == 0
    monkeypatch.undo()
    assert gate.promote(ws, ledger, str(capsule)).exit_code == 0
    assert ledger.head().seq == 1


@pytest.mark.parametrize("what", ["policy input", "ledger entry", "pointer state"])
def test_each_document_is_held_to_the_readers_limit(what: str) -> None:
    from promote.canonical import MAX_DOCUMENT
    from promote.errors import InvalidCapsule
    from promote.gate import _check_readable

    _check_readable(what, MAX_DOCUMENT)
    with pytest.raises(InvalidCapsule, match=f"the {what} of this promotion would be"):
        _check_readable(what, MAX_DOCUMENT + 1)


def test_the_limits_are_coherent() -> None:
    """What the gate takes from outside is held to less than what it writes, and every
    reader of what it writes accepts what the gate lets through (ADR 19)."""
    from promote import capsules, evidence, gate, justify
    from promote.canonical import MAX_DOCUMENT, MAX_UNTRUSTED

    assert MAX_UNTRUSTED < MAX_DOCUMENT
    assert gate.MAX_CAPSULE == evidence.MAX_EVIDENCE == evidence.MAX_REPORT == MAX_UNTRUSTED
    assert capsules.MAX_CHECK_REPORT == MAX_UNTRUSTED
    assert justify.MAX_DOC == MAX_DOCUMENT


def test_a_capsule_over_the_limit_is_refused_and_one_at_it_promotes(tmp_path: Path) -> None:
    """A capsule of MAX_CAPSULE + 1 real bytes is refused (exit 2) and commits nothing;
    the same capsule padded to exactly MAX_CAPSULE bytes promotes."""
    from promote import gate
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    flow = Flow.init(tmp_path / "ws")
    ref = flow.put(b"app 1.0.0\n")
    capsule = flow.capsule({"release/app.txt": ref[0]}, flow.check([ref]))
    data = capsule.read_bytes()
    ws = Workspace.find(flow.root)
    ledger = open_ledger(ws)
    big = flow.root / "big.json"
    big.write_bytes(data + b" " * (gate.MAX_CAPSULE + 1 - len(data)))
    outcome = gate.promote(ws, ledger, str(big))
    assert (outcome.status, outcome.exit_code) == ("failed", 2)
    assert f"larger than {gate.MAX_CAPSULE} bytes" in outcome.reasons[0]
    assert ledger.head().seq == 0
    big.write_bytes(data + b" " * (gate.MAX_CAPSULE - len(data)))
    assert gate.promote(ws, ledger, str(big)).exit_code == 0
    assert ledger.head().seq == 1
