"""Grow a bench workspace's ledger to N entries, fast, as the gate would have written it.

Run as `python bench/build_ledger.py WORKSPACE N FILE_B CHECK [--jobs J]` on the
interpreter `promote` runs on, in a workspace whose ledger holds one real promotion
(entry 1: release/x = object A) and whose store holds CHECK, one signed CHECK
attestation about A and B. Entries 2..N alternate release/x between B and A, each on
one of two capsules (`promote.capsules.new_capsule`, guarded on the other object),
so every entry is one of two *shapes*; what varies from entry to entry is the ledger
position (seq, prev) and what hangs on it.

How an entry is made (each piece by promote's own public functions):

- input: `gate.policy_input` for the entry's head, `canonical` bytes;
- decision: `decide` (the gate's function) on that input, with an engine that answers
  a shape's input with the answer the real engine (the workspace's, `regorus` by
  default) gave for that shape. Before any answer is reused, the real engine
  evaluates each shape's input for the first entries and for inputs whose `ledger`
  field is set to other positions (seq 0 and 10^9, head null and another hash): all
  its answers must be the same, else the build stops (a policy that reads the ledger
  position cannot be built this way);
- VSA: `promote.vsa.build_vsa` and `sign_vsa` with the runner key, for the entry's
  seq, changes and pins, as the gate builds it (its SHA-256s read once from the
  store); it does not depend on the chain, so worker processes make them ahead;
- entry: `build_entry` and `sign_entry` with the runner key, strictly in order (each
  names the previous entry's hash, which covers its signature).

Checked against the gate: the first entry of every chunk (entries 2, 3, 4, then every
10,000th) is first planned by the unmodified `promote.gate.plan` on the workspace's
real ledger (entries written up to the one before, HEAD written, the checkpoint moved
forward with `promote.rollback.advance` as the gate does after a commit), with the
real engine; its entry, input, decision and VSA bytes must be identical to the ones
built here, or the build stops.

Written: every object an entry names beyond those already stored (its input, its
decision, its VSA) with `LocalStore.put_many` (durable, batched syncs), the entry
files `entries/<seq>.json` (read-only, created exclusively), in worker processes, a
chunk at a time; then `sync`, HEAD last, and the checkpoint moved to the head
(`advance`). The caller then runs `promote recover`, which re-justifies every entry
before it brings the view up to date.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

import promote.gate as gate
from cas.digest import ObjectRef, hash_bytes
from cas.fsutil import atomic_write
from cas.local import LocalStore
from promote.attest.keys import PrivateKey, key_id
from promote.attest.runner import load_runner_key
from promote.attest.trust import TrustRoots
from promote.canonical import canonical
from promote.capsules import new_capsule
from promote.evidence import Attestation, read_evidence
from promote.ledger.backend import load_state
from promote.ledger.entry import Entry, Head, build_entry, sign_entry
from promote.ledger.files import FileLedger
from promote.model import Capsule, Change, State, load_capsule
from promote.pins import workspace_trust
from promote.policy.engines import (
    Decision,
    Engine,
    PolicyBundle,
    decide,
    engine_from_config,
    load_bundle,
)
from promote.rollback import advance
from promote.verify import open_ledger
from promote.vsa import build_vsa, sign_vsa, vsa_subjects
from promote.workspace import Workspace

#: Entries per chunk of work (VSAs made and stored, entries written).
CHUNK = 2_500
#: Every CHECK_EVERY-th entry is first planned by gate.plan (and entries 2, 3, 4).
CHECK_EVERY = 10_000
#: Entries whose inputs the real engine evaluates, per shape, before reusing its answer.
REAL_EVALUATIONS = 3
#: Other ledger positions the real engine is asked about, per shape.
PROBES = (
    {"seq": 0, "head": None},
    {"seq": 10**9, "head": "blake3:" + "f" * 64},
)


class BuildError(Exception):
    """The built ledger would not be the one the gate writes."""


class Shape:
    """One of the two capsules and everything about it that does not depend on the
    entry's position: the evidence, the state before and after, the changes."""

    def __init__(self, ws: Workspace, trust: TrustRoots, data: bytes, before: State) -> None:
        self.data = data
        self.ref = hash_bytes(data)
        self.capsule: Capsule
        self.capsule, self.doc = load_capsule(data)
        self.evidence: list[Attestation] = read_evidence(ws.store, self.capsule, trust)
        self.before = before
        self.changes = sorted(
            (Change(t.path, before.get(t.path), t.ref) for t in self.capsule.targets),
            key=lambda c: c.path,
        )
        self.after = before.apply(self.changes)

    def input_doc(self, ws: Workspace, head: Head) -> dict[str, Any]:
        return gate.policy_input(
            capsule_doc=self.doc,
            capsule_ref=self.ref,
            capsule=self.capsule,
            attestations=self.evidence,
            head=head,
            state=self.before,
            allow_list=ws.allow_list,
            control=None,
        )


class ShapeEngine(Engine):
    """The real engine for each shape's first REAL_EVALUATIONS inputs; then, once it
    gave them one answer and gave that answer too for the same input at other ledger
    positions (PROBES), that answer for the rest of the shape's inputs."""

    def __init__(self, real: Engine) -> None:
        self.real = real
        self.name = real.name
        self._version = real.version()
        self.seen: dict[int, list[dict[str, Any]]] = {}
        self.shape = -1

    def version(self) -> str:
        return self._version

    def evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        seen = self.seen.setdefault(self.shape, [])
        if len(seen) >= REAL_EVALUATIONS:
            return seen[0]
        answer = self.real.evaluate(bundle, input_json)
        seen.append(answer)
        if len(seen) == REAL_EVALUATIONS:
            doc = json.loads(input_json)
            probes = [canonical({**doc, "ledger": p}).decode() for p in PROBES]
            answers = [*seen, *(self.real.evaluate(bundle, p) for p in probes)]
            if any(a != answer for a in answers):
                raise BuildError(
                    f"the policy answers shape {self.shape} differently at different ledger"
                    f" positions ({answers}): its decisions cannot be reused"
                )
        return answer


class Builder:
    """What every process needs: the workspace, its keys and pins, the two shapes."""

    def __init__(self, root: Path, file_b: Path, check: str) -> None:
        self.ws = ws = Workspace.load(root)
        self.store = ws.store
        if not isinstance(self.store, LocalStore):
            raise BuildError("the bench builds a ledger in a local store only")
        ledger = open_ledger(ws)
        if not isinstance(ledger, FileLedger):
            raise BuildError("the bench builds a file ledger only")
        self.ledger_dir = ledger.dir
        self.first = ledger.head()
        if self.first.seq != 1:
            raise BuildError(f"want a ledger of one entry, it has {self.first.seq}")
        self.trust = workspace_trust(ws)
        self.trust_ref = hash_bytes(self.trust.encode())
        self.bundle = load_bundle(ws.policy_dir, ws.policy_package)
        self.key: PrivateKey = load_runner_key(ws.root)
        self.runner = self.trust.signer_of(key_id(self.key.public_key())).id
        b = self.store.put_bytes(file_b.read_bytes())
        state_a = load_state(self.store, self.first.state)
        a = state_a.get("release/x")
        if a is None:
            raise BuildError("entry 1 does not set release/x")
        to_b = new_capsule(
            ws, ledger, [f"release/x={b.digest}"], None,
            expects=[f"release/x={a.digest}"], attestations=[check],
        )  # fmt: skip
        self.shapes = [Shape(ws, self.trust, to_b, state_a)]
        to_a = new_capsule(
            ws, ledger, [f"release/x={a.digest}"], None,
            expects=[f"release/x={b.digest}"], attestations=[check],
        )  # fmt: skip
        self.shapes.append(Shape(ws, self.trust, to_a, self.shapes[0].after))
        for s in self.shapes:  # what `promote` stores beyond the entry's own objects
            self.store.put_bytes(s.data)
            self.store.put_bytes(s.after.encode())
        self._sha256: dict[ObjectRef, str] = {}

    def shape_of(self, seq: int) -> int:
        """Entry 2 sets release/x to B (shape 0), entry 3 back to A (shape 1), ..."""
        return seq % 2

    # -- the VSA: no chain, made in the workers ------------------------------

    def sha256(self, ref: ObjectRef) -> str:
        import hashlib

        if ref not in self._sha256:
            self._sha256[ref] = hashlib.sha256(self.store.read_bytes(ref.digest)).hexdigest()
        return self._sha256[ref]

    def vsa(self, seq: int) -> bytes:
        """The VSA of entry `seq`, as the gate builds it (`gate.plan`, `promote.vsa`)."""
        s = self.shapes[self.shape_of(seq)]
        doc = {
            "seq": seq,
            "changes": [c.to_dict() for c in s.changes],
            "policy": self.bundle.ref().to_dict(),
            "trust": self.trust_ref.to_dict(),
            "state_after": s.after.ref().to_dict(),
        }
        statement = build_vsa(
            seq=seq,
            runner=self.runner,
            subjects=vsa_subjects(doc),
            policy=self.bundle.ref(),
            evidence=[a.ref for a in s.evidence],
            sha256=self.sha256,
            passed=True,
        )
        return sign_vsa(statement, self.key).encode()

    # -- the chain: in order, in the main process -----------------------------

    def entry(self, engine: ShapeEngine, head: Head, vsa: ObjectRef) -> tuple[Entry, bytes, bytes]:
        """Entry `head.seq + 1`, its input and decision bytes."""
        shape = self.shape_of(head.seq + 1)
        s = self.shapes[shape]
        doc = s.input_doc(self.ws, head)
        input_bytes = canonical(doc)
        engine.shape = shape
        decision: Decision = decide(engine, self.bundle, doc)
        if not decision.allow:
            raise BuildError(f"entry {head.seq + 1}: denied: {decision.deny}")
        decision_bytes = decision.encode()
        unsigned = build_entry(
            head,
            capsule=s.ref,
            evidence=[a.ref for a in s.evidence],
            decision=hash_bytes(decision_bytes),
            policy=decision.policy,
            trust=self.trust_ref,
            vsa=vsa,
            state_after=s.after.ref(),
            changes=s.changes,
        )
        return sign_entry(unsigned, self.key), input_bytes, decision_bytes


#: The builder in each worker process (forked: it inherits the parent's).
_builder: Builder | None = None


def _put(objects: list[bytes]) -> list[ObjectRef]:
    assert _builder is not None
    store = _builder.store
    assert isinstance(store, LocalStore)
    refs = list(store.put_many([io.BytesIO(d) for d in objects], jobs=1))
    if refs != [hash_bytes(d) for d in objects]:
        raise BuildError("the store named an object otherwise than its bytes")
    return refs


def make_vsas(lo: int, hi: int) -> list[ObjectRef]:
    """Worker: the VSAs of entries lo..hi-1, stored; their references."""
    assert _builder is not None
    return _put([_builder.vsa(seq) for seq in range(lo, hi)])


def write_entries(entries: list[tuple[int, bytes]], objects: list[bytes]) -> None:
    """Worker: store the entries' objects, then write the entry files."""
    assert _builder is not None
    _put(objects)
    entries_dir = _builder.ledger_dir / "entries"
    for seq, data in entries:
        fd = os.open(entries_dir / f"{seq:012d}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def chunks(n: int, size: int = CHUNK, every: int = CHECK_EVERY) -> list[tuple[int, int]]:
    """Entries 2..n in chunks of up to `size`: 2, 3 and 4 alone (checked), and one
    starting at every `every`-th entry (checked)."""
    bounds = {b for b in (2, 3, 4, 5) if b <= n + 1}
    bounds |= set(range(size, n + 1, size)) | set(range(every, n + 1, every))
    return list(itertools.pairwise(sorted({*bounds, n + 1})))


def checked(lo: int, every: int = CHECK_EVERY) -> bool:
    """Whether the chunk starting at entry `lo` is checked against gate.plan."""
    return lo in (2, 3, 4) or lo % every == 0


def check_against_gate(b: Builder, head: Head, built: Entry, input_bytes: bytes,
                       decision_bytes: bytes, vsa: bytes) -> None:  # fmt: skip
    """Entry `head.seq + 1` as the unmodified gate plans it on the ledger as written
    so far (HEAD written, the checkpoint moved as the gate moves it after a commit),
    with the workspace's real engine: every byte the same as the built one."""
    ledger = open_ledger(b.ws)
    if not isinstance(ledger, FileLedger):
        raise BuildError("the bench builds a file ledger only")
    atomic_write(ledger.dir / "HEAD", canonical(head.to_dict()))
    if ledger.head() != head:
        raise BuildError(f"the ledger on disk ends at {ledger.head()}, not {head}")
    advance(b.ws.root, ledger)
    p = gate.plan(b.ws, ledger, b.shapes[b.shape_of(head.seq + 1)].data)
    for what, theirs, ours in (
        ("input", p.input_bytes, input_bytes),
        ("decision", p.decision.encode(), decision_bytes),
        ("VSA", p.vsa, vsa),
        ("entry", p.entry.data, built.data),
    ):
        if theirs != ours:
            raise BuildError(
                f"entry {head.seq + 1}: the built {what} differs from gate.plan's:\n"
                f"gate:  {theirs[:400]!r}\nbuilt: {ours[:400]!r}"
            )


def build(
    root: Path, n: int, file_b: Path, check: str, jobs: int, every: int = CHECK_EVERY
) -> dict[str, float]:
    global _builder
    started = time.perf_counter()
    b = _builder = Builder(root, file_b, check)
    engine = ShapeEngine(engine_from_config(b.ws.engine_config))
    head = b.first
    checks = 0
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        parts = chunks(n, min(CHUNK, every), every)
        ahead = 2 * jobs  # chunks in flight: VSAs ahead of the chain, writes behind it
        vsas: dict[int, AsyncResult[list[ObjectRef]]] = {}
        writing: list[AsyncResult[None]] = []

        def want_vsas(i: int) -> None:
            if i < len(parts) and i not in vsas:
                vsas[i] = pool.apply_async(make_vsas, parts[i])

        for i in range(ahead):
            want_vsas(i)
        for i, (lo, hi) in enumerate(parts):
            want_vsas(i + ahead)
            refs = vsas.pop(i).get()
            before = head
            built: list[tuple[int, bytes]] = []
            objects: list[bytes] = []
            first: tuple[Entry, bytes, bytes] | None = None
            for seq, vsa in zip(range(lo, hi), refs, strict=True):
                e, input_bytes, decision_bytes = b.entry(engine, head, vsa)
                if first is None:
                    first = (e, input_bytes, decision_bytes)
                built.append((seq, e.data))
                objects += (input_bytes, decision_bytes)
                head = e.head()
            assert first is not None
            if checked(lo, every):
                while writing:  # every entry before `lo` on disk
                    writing.pop(0).get()
                check_against_gate(b, before, *first, b.vsa(lo))
                checks += 1
            while len(writing) >= ahead:
                writing.pop(0).get()
            writing.append(pool.apply_async(write_entries, (built, objects)))
        while writing:
            writing.pop(0).get()
    os.sync()
    atomic_write(b.ledger_dir / "HEAD", canonical(head.to_dict()))
    ledger = open_ledger(b.ws)
    if ledger.head() != head:
        raise BuildError(f"the ledger ends at {ledger.head()}, not {head}")
    advance(b.ws.root, ledger)
    return {"entries": n, "checked": checks, "seconds": time.perf_counter() - started}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("file_b", type=Path)
    ap.add_argument("check")
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument(
        "--check-every", type=int, default=CHECK_EVERY, help="entries between gate.plan checks"
    )
    args = ap.parse_args(argv)
    try:
        out = build(
            args.workspace,
            args.n,
            args.file_b,
            args.check,
            max(1, args.jobs),
            max(2, args.check_every),
        )
    except BuildError as e:
        print(f"build_ledger: {e}", file=sys.stderr)
        return 1
    print(
        f"built {out['entries']:.0f} entries in {out['seconds']:.1f} s"
        f" ({out['checked']:.0f} checked against gate.plan)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
