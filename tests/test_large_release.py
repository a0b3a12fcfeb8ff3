"""A release of thousands of targets promotes end to end and verifies clean afterwards
(issue 15, ADR 19): the gate writes nothing its own readers (`promote verify`, the
re-justification) refuse. The workspace is built in-process, as a builder with many
files would (a command line of thousands of `--target`s is too long)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from helpers import Flow

from cas.digest import hasher
from promote.attest.dsse import sign_envelope
from promote.attest.keys import load_private_key
from promote.attest.statement import MAX_SUBJECTS, PAYLOAD_TYPE, Statement, Subject
from promote.canonical import canonical
from promote.workspace import Workspace

N = 5_000  # more than one statement names: the VSA names the pointer state (ADR 16)
CHECK = "https://cas-promote.invalid/check-report/v1"


def _capsule(flow: Flow, release: int) -> Path:
    """Put N files of `release`, sign CHECK statements of at most MAX_SUBJECTS about
    them, and write a capsule naming them all; its path."""
    ws = Workspace.find(flow.root)
    names = [f"release/d{i // 1000:02d}/f{i % 1000:03d}" for i in range(N)]
    blobs = [f"release {release} of {n}\n".encode() for n in names]
    refs = list(ws.store.put_many(io.BytesIO(b) for b in blobs))
    key = load_private_key(flow.key_path("checker"))
    predicate = {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]}
    attestations = []
    for lo in range(0, N, MAX_SUBJECTS):
        subjects = []
        for name, data in zip(
            names[lo : lo + MAX_SUBJECTS], blobs[lo : lo + MAX_SUBJECTS], strict=True
        ):
            b3 = hasher()
            b3.update(data)
            pairs = (("blake3", b3.hexdigest()), ("sha256", hashlib.sha256(data).hexdigest()))
            subjects.append(Subject(name, pairs))
        statement = Statement.build(subjects, CHECK, predicate)
        envelope = sign_envelope(PAYLOAD_TYPE, statement.encode(), [key])
        attestations.append(str(ws.store.put_bytes(envelope.encode()).digest))
    targets = [
        {"path": n, "digest": str(r.digest), "size": r.size}
        for n, r in zip(names, refs, strict=True)
    ]
    doc = {
        "schema": "promote-capsule/v2",
        "targets": targets,
        "evidence": {"attestations": attestations},
    }
    path = flow.root / f"capsule-{release}.json"
    path.write_bytes(canonical(doc))
    return path


def test_thousands_of_targets_promote_and_verify_clean(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    first = _capsule(flow, 1)
    flow.ok("promote", first)
    # every target changed over N existing paths: each change names `from` and `to`
    second = _capsule(flow, 2)
    flow.ok("promote", second)
    out = flow.ok("promote", "verify").stdout.decode()
    assert "verify: clean" in out
    flow.ok("promote", "ledger", "verify")
    view = flow.root / "release/d04/f999"
    assert view.read_bytes() == b"release 2 of release/d04/f999\n"
