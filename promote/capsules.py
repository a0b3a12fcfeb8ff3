"""`promote capsule new`: build a valid capsule from digests in the store."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import IntegrityError, ObjectMissing, UsageError
from promote.canonical import MAX_UNTRUSTED, pretty
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend, load_state
from promote.model import ABSENT, Capsule, Target, load_capsule, load_check_report
from promote.paths import check_layout, check_path
from promote.workspace import Workspace

#: The largest CHECK report `capsule new` reads back to validate it.
MAX_CHECK_REPORT = MAX_UNTRUSTED

__all__ = ["new_capsule"]


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        path, sep, value = item.rpartition("=")
        if not sep or not path:
            raise UsageError(f"{flag} {item!r}: want PATH=VALUE")
        out.append((path, value))
    return out


def new_capsule(
    ws: Workspace,
    ledger: CommitBackend,
    targets: Sequence[str],
    check_report: str | None,
    expects: Sequence[str] = (),
    expect_current: bool = False,
    base: str | None = None,
    builder: str | None = None,
    source_revision: str | None = None,
    deletes: Sequence[str] = (),
    attestations: Sequence[str] = (),
) -> bytes:
    """The bytes of a capsule, validated exactly as `promote` will validate it.

    With `attestations` (DSSE envelopes in the store), a `promote-capsule/v2`; with a
    `check_report` instead, a `promote-capsule/v1`, whose report is unsigned evidence.

    Raises:
        UsageError: a malformed argument, or a digest the store does not hold.
    """
    if (check_report is None) == (not attestations):
        raise UsageError("name the evidence: --attestation DIGEST (repeatable) or --check-report")
    store = ws.store
    head = ledger.head() if (expect_current or base == "current") else None
    state = load_state(store, head.state) if head and expect_current else None
    guards: dict[str, Digest | str] = {}
    for path, value in _pairs(expects, "--expect"):
        guards[path] = ABSENT if value == ABSENT else Digest.parse(value)
    built = []
    for path, value in _pairs(targets, "--target"):
        digest = Digest.parse(value)
        try:
            size = store.size(digest)
        except ObjectMissing:
            raise UsageError(
                f"--target {path}: {digest} is not in the store (cas put it first)"
            ) from None
        expect = guards.pop(path, None)
        if expect is None and state is not None:
            held = state.get(path)
            expect = held.digest if held else ABSENT
        built.append(Target(path, ObjectRef(digest, size), expect))
    for path in deletes:
        expect = guards.pop(path, None)
        if expect is None and state is not None:
            held = state.get(path)
            expect = held.digest if held else ABSENT
        built.append(Target(path, None, expect))
    if not built:
        raise UsageError("a capsule needs at least one --target or --delete")
    if guards:
        raise UsageError(f"--expect for paths that are not targets: {sorted(guards)}")
    base_digest = None
    if base == "current":
        assert head is not None
        base_digest = head.base
    elif base:
        base_digest = Digest.parse(base)
    meta = {}
    if builder:
        meta["builder"] = builder
    if source_revision:
        meta["source_revision"] = source_revision
    if check_report is not None:
        evidence: tuple[Digest, ...] = (Digest.parse(check_report),)
        version = 1
    else:
        evidence = tuple(Digest.parse(a) for a in attestations)
        version = 2
        if len(set(evidence)) != len(evidence):
            raise UsageError("--attestation: the same attestation is named twice")
    try:
        capsule = Capsule(tuple(built), evidence, base_digest, meta, version=version)
    except ValueError as e:
        raise UsageError(f"capsule: {e}") from None
    data = pretty(capsule.to_dict())
    # The same validation promote runs, up to its hygiene (not the policy): fail here,
    # not later. Every refusal is exit 2.
    load_capsule(data)
    paths = [t.path for t in built]
    for path in paths:
        check_path(path)
    # The ledger is read only when the capsule asks for the current state (a builder
    # writes capsules without ledger access); otherwise the layout is checked among the
    # capsule's own paths, and promote checks it against the current state.
    if head is None:
        check_layout(paths, ())
    else:
        check_layout(paths, (state or load_state(store, head.state)).pointers)
    if version == 1:
        hint = "cas put it first"
        _in_store(store, evidence[0], "--check-report", MAX_CHECK_REPORT, load_check_report, hint)
    else:
        from promote.attest.dsse import MAX_ENVELOPE, load_envelope

        hint = "sign it with 'promote attest'"
        for digest in evidence:
            _in_store(store, digest, "--attestation", MAX_ENVELOPE, load_envelope, hint)
    return data


def _in_store(
    store: ObjectStore,
    digest: Digest,
    flag: str,
    limit: int,
    load: Callable[[bytes], object],
    hint: str,
) -> None:
    """Refuse evidence named by `flag` that the store lacks, or that `load` refuses."""
    try:
        data = store.read_bytes(digest, limit=limit)
    except ObjectMissing:
        raise UsageError(f"{flag} {digest} is not in the store ({hint})") from None
    except IntegrityError as e:
        raise UsageError(f"{flag} {digest}: {e}") from None
    try:
        load(data)
    except InvalidDocument as e:
        raise UsageError(f"{flag} {digest}: {e}") from None
