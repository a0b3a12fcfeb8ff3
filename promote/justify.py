"""Re-justification: every ledger entry, checked again from what it records (ADR 10).

The hash chain proves that the entries were not edited after the fact by someone who
did not rewrite the rest; it does not prove that an entry was ever a promotion the
gate allowed. A writer of the ledger directory (or the PostgreSQL table) can write a
whole new, consistent chain. So `promote ledger verify`, `promote verify`, `cas fsck`
in a workspace, `ledger verify-chain --store` and `promote recover` check each entry
again, in order, with the pins (policy bundle, trust roots) in force before it:

1. **signed**: the signature verifies with the key of a `runner` signer of the trust
   roots pinned BEFORE the entry. The first entry (or the first after v1 entries,
   which pin no trust) is checked against the trust roots it pins itself: trust on
   first use, as `promote init` writes them;
2. **changes**: exactly the capsule's targets, each from what `state_before` held;
3. **decision**: allow, with no deny, by the pinned policy bundle, about the input
   the entry's decision names;
4. **evidence**: the capsule's attestations, in order, each verified against the
   pinned trust roots (`promote.evidence.read_evidence`), together covering every
   target that names an object. A control entry needs a control-change attestation
   naming exactly the new pins, signed to the admin threshold of the pinned trust
   roots and, when the trust roots change, of the new ones too;
5. **pins**: a release entry pins what was pinned before it; only a control entry
   changes them;
6. **input**: the decision's input is byte-identical to the input rebuilt from the
   capsule, the evidence, the state before and the pins (`gate.policy_input`); the
   allow-list is the one the input records, and every target must be inside it;
7. with `replay`, the recorded bundle evaluated again on the recorded input gives the
   recorded decision bytes.

A v1 entry is unsigned: it is reported (`unsigned`) unless `allow_unsigned`, and then
only checks 2 and 3 apply to it (its input was a v1 input, not rebuilt). A v1 entry
after a v2 one is never accepted: that is a downgrade, not history.

What it cannot prove: that a runner key was not stolen (a thief can sign an entry
that passes 1, though not evidence signed by a checker: 4), nor that an allow-list
recorded in the input was the workspace's config then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from cas.backend import ObjectStore, Problem
from cas.digest import ObjectRef, hash_bytes
from cas.errors import CasError, IntegrityError, ObjectMissing
from promote.attest.trust import TrustRoots, load_trust
from promote.canonical import MAX_DOCUMENT, canonical, load_json, parse_canonical
from promote.errors import LinkageError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import EMPTY_STATE, Entry, Head, entry_signature_ok, parse_entry
from promote.model import Capsule, Change, State

__all__ = [
    "Start",
    "Unjustified",
    "Unsigned",
    "justify_ledger",
    "justify_range",
    "pins_after",
    "range_starts",
    "require_justified",
]

#: The largest capsule, decision, input or trust document read back: what the gate
#: writes may be up to MAX_DOCUMENT (ADR 19).
MAX_DOC = MAX_DOCUMENT


class Unjustified(LinkageError):
    """An entry the recorded evidence does not justify (exit 3)."""


class Unsigned(Unjustified):
    """A v1 entry, unsigned, where signatures are required (exit 3)."""


@attrs.frozen
class _Pins:
    policy: ObjectRef | None = None
    trust_ref: ObjectRef | None = None
    trust: TrustRoots | None = None


_Key = tuple[str, str, int]


class _Memo:
    """What one run reads again and again, kept by the digest of the verified bytes it
    was made from (and, for evidence, the trust roots' too): the same bytes give the
    same parse and the same verdict, so nothing weaker than the bytes is a key. Only
    successes are kept; a failure is met again, and reported again, every time."""

    def __init__(self) -> None:
        # keyed by `_key`: a plain tuple hashes faster than the ref it stands for
        self.trust: dict[_Key, TrustRoots] = {}
        self.capsules: dict[_Key, tuple[Capsule, Any]] = {}
        self.evidence: dict[tuple[_Key, _Key | None], list[Any]] = {}
        self.sha256: dict[str, str] = {}  # by the digest of the bytes, as text


def _key(ref: ObjectRef) -> _Key:
    """A memo's key for `ref`: its digest (algorithm and hex) and size, all a ref is."""
    return ref.digest.algorithm, ref.digest.hex, ref.size


def _read(store: ObjectStore, ref: ObjectRef, what: str) -> bytes:
    """The object's bytes, verified against its digest, and of its size."""
    try:
        if ref.size > MAX_DOC:
            raise Unjustified(f"{what} {ref.digest}: {ref.size} bytes, more than {MAX_DOC}")
        data = store.read_bytes(ref.digest, limit=MAX_DOC)  # re-hashed as it is read
        if len(data) != ref.size:
            raise IntegrityError(
                f"object {ref.digest} has {len(data)} bytes, but {ref.size} were promised"
            )
        return data
    except ObjectMissing:
        raise Unjustified(f"{what} {ref.digest} is not in the store") from None
    except IntegrityError as e:
        raise Unjustified(f"{what}: {e}") from None


def _json(store: ObjectStore, ref: ObjectRef, what: str) -> tuple[bytes, Any]:
    data = _read(store, ref, what)
    doc = parse_canonical(data)  # what the gate wrote: canonical, and so parsed fast
    if doc is not None:
        return data, doc
    try:
        return data, load_json(data, what)
    except CasError as e:
        raise Unjustified(f"{what} {ref.digest}: {e}") from None


def _trust(store: ObjectStore, ref: ObjectRef, memo: _Memo | None = None) -> TrustRoots:
    if memo is not None and _key(ref) in memo.trust:
        return memo.trust[_key(ref)]
    data = _read(store, ref, "the pinned trust roots")
    try:
        trust = load_trust(data, f"the pinned trust roots {ref.digest}")
    except CasError as e:
        raise Unjustified(str(e)) from None
    if memo is not None:
        memo.trust[_key(ref)] = trust
    return trust


def _decision(store: ObjectStore, ref: ObjectRef) -> tuple[bytes, Mapping[str, Any]]:
    data, doc = _json(store, ref, "decision")
    want = {"schema", "allow", "deny", "engine", "policy", "input"}
    if not isinstance(doc, dict) or set(doc) != want:
        raise Unjustified(f"decision {ref.digest}: not a policy decision document")
    if doc["allow"] is not True or doc["deny"] != []:
        deny = doc["deny"] if isinstance(doc["deny"], list) else []
        why = "; ".join(str(d) for d in deny[:3]) or "allow is not true"
        raise Unjustified(f"the decision is not an allow: {why[:300]}")
    try:
        ObjectRef.from_dict(doc["policy"])
        ObjectRef.from_dict(doc["input"])
    except CasError as e:
        raise Unjustified(f"decision {ref.digest}: {e}") from None
    return data, doc


def _covered(attestations: Sequence[Any]) -> set[tuple[str, str, int]]:
    """(path, digest, size) of every target some signed attestation's subject matched."""
    out: set[tuple[str, str, int]] = set()
    for a in attestations:
        if not a.signers:
            continue
        for s in a.subjects:
            matched = s.get("targets")
            if matched is None:
                matched = [s["target"]] if s.get("target") else []
            out.update((t["path"], t["digest"], t["size"]) for t in matched)
    return out


def _check_control(
    store: ObjectStore,
    attestations: Sequence[Any],
    entry: Entry,
    pinned: _Pins,
    new_trust: TrustRoots,
) -> None:
    from promote.attest.dsse import load_envelope
    from promote.attest.statement import CONTROL_PREDICATE
    from promote.attest.trust import get_verification_result

    assert entry.trust is not None
    want = {"policy": str(entry.doc["policy"]["digest"]), "trust": str(entry.trust.digest)}
    naming = [
        a
        for a in attestations
        if a.predicate_type == CONTROL_PREDICATE
        and dict(a.predicate) == want
        and "admin" in a.roles
    ]
    if not naming:
        raise Unjustified(
            "a control entry without a control-change attestation naming its new pins,"
            " signed to the admin threshold of the trust roots pinned before it"
        )
    if pinned.trust_ref is None or pinned.trust_ref == entry.trust:
        return
    for a in naming:
        envelope = load_envelope(store.read_bytes(a.digest, limit=a.size))
        if get_verification_result(envelope, new_trust, "admin").verified:
            return
    raise Unjustified(
        "a change of the trust roots not signed to the admin threshold of the new trust roots"
    )


def _rebuild_input(
    capsule_doc: Any,
    capsule_ref: ObjectRef,
    capsule: Capsule,
    attestations: list[Any],
    head: Head,
    state: State,
    allow_list: list[str],
    control: Mapping[str, Any] | None,
) -> bytes:
    from promote import gate

    return canonical(
        gate.policy_input(
            capsule_doc=capsule_doc,
            capsule_ref=capsule_ref,
            capsule=capsule,
            attestations=attestations,
            head=head,
            state=state,
            allow_list=allow_list,
            control=control,
        )
    )


def _replay(
    store: ObjectStore,
    decision_bytes: bytes,
    decision: Mapping[str, Any],
    input_doc: Any,
    engine_config: Mapping[str, Any],
) -> None:
    from promote.policy.engines import PolicyBundle, decide, engine_from_config

    policy = ObjectRef.from_dict(decision["policy"])
    try:
        bundle = PolicyBundle.decode(_read(store, policy, "the recorded policy bundle"))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise Unjustified(f"the recorded policy bundle {policy.digest}: {e}") from None
    name = decision["engine"]["name"] if isinstance(decision["engine"], dict) else None
    engine = engine_from_config(engine_config, str(name) if name else None)
    got = decide(engine, bundle, input_doc)
    if got.encode() != decision_bytes:
        raise Unjustified(
            f"--replay: the recorded policy on the recorded input gives"
            f" allow={str(got.allow).lower()} (deny: {'; '.join(got.deny)[:200] or 'none'},"
            f" engine {got.engine} {got.engine_version}), not the recorded decision"
        )


def check_entry_vsa(
    store: ObjectStore,
    entry: Entry,
    trust: TrustRoots,
    own_trust: TrustRoots,
    memo: _Memo | None = None,
) -> None:
    """The VSA the entry names (`promote.vsa`): signed by the key that signed the entry
    (a runner of `trust`, the roots pinned before it), by the runner `own_trust` (the
    roots the entry pins) names so, PASSED, about this entry, its subjects exactly the
    entry's targets and its inputAttestations exactly the entry's evidence, with
    SHA-256 digests that are the bytes'.

    Raises:
        Unjustified (3): one line naming what does not hold.
    """
    import hashlib

    from promote.attest.dsse import load_envelope, verify_envelope
    from promote.vsa import check_vsa

    ref = entry.vsa
    if ref is None:
        raise Unjustified("it names no VSA")
    try:
        envelope = load_envelope(_read(store, ref, "VSA"))
    except CasError as e:
        raise Unjustified(f"VSA {ref.digest}: {e}") from None
    kid = entry.doc["signature"]["keyid"]
    key = trust.keys.get(kid)
    if key is None or kid not in verify_envelope(envelope, {kid: key}).verified:
        raise Unjustified(f"VSA {ref.digest}: not signed by the runner key {kid} of the entry")
    runner = own_trust.signer_of(kid).id if kid in own_trust.keys else None

    def sha256(r: ObjectRef) -> str:
        if memo is not None and str(r.digest) in memo.sha256:
            return memo.sha256[str(r.digest)]
        h = hashlib.sha256()
        try:
            for chunk in store.open(r.digest):  # verified against the BLAKE3 name
                h.update(chunk)
        except CasError as e:
            raise Unjustified(f"VSA: object {r.digest}: {e}") from None
        if memo is not None:
            memo.sha256[str(r.digest)] = h.hexdigest()
        return h.hexdigest()

    try:
        check_vsa(envelope, entry.doc, runner, sha256)
    except CasError as e:
        raise Unjustified(f"VSA {ref.digest}: {e}") from None


def _justify_v2(
    store: ObjectStore,
    entry: Entry,
    head: Head,
    state: State,
    pinned: _Pins,
    *,
    replay: bool,
    engine_config: Mapping[str, Any],
    memo: _Memo,
) -> _Pins:
    """Check one v2 entry; return the pins it leaves. Raises Unjustified."""
    from promote.evidence import read_evidence
    from promote.model import load_capsule
    from promote.paths import check_allowed

    assert entry.trust is not None
    own_trust = _trust(store, entry.trust, memo)
    trust = pinned.trust if pinned.trust is not None else own_trust
    trust_ref = pinned.trust_ref if pinned.trust is not None else entry.trust
    try:
        entry_signature_ok(entry, trust)
    except CasError as e:
        raise Unjustified(str(e).removeprefix(f"ledger entry {entry.seq}: ")) from None
    check_entry_vsa(store, entry, trust, own_trust, memo)
    capsule_ref = entry.capsule_ref
    if _key(capsule_ref) in memo.capsules:
        capsule, capsule_doc = memo.capsules[_key(capsule_ref)]
    else:
        capsule_bytes = _read(store, capsule_ref, "capsule")
        try:
            capsule, capsule_doc = load_capsule(capsule_bytes)
        except CasError as e:
            raise Unjustified(f"capsule {capsule_ref.digest}: {e}") from None
        memo.capsules[_key(capsule_ref)] = capsule, capsule_doc
    want = sorted(
        (Change(t.path, state.get(t.path), t.ref) for t in capsule.targets), key=lambda c: c.path
    )
    if entry.changes != want:
        raise Unjustified("its changes are not exactly its capsule's targets against state_before")
    decision_bytes, decision = _decision(store, entry.decision_ref)
    policy_before = pinned.policy or entry.policy_ref
    if ObjectRef.from_dict(decision["policy"]) != policy_before:
        raise Unjustified(
            f"decided by policy {decision['policy']['digest']}, not the pinned {policy_before.digest}"
        )
    control = None
    if capsule.kind == "control":
        trust_before = pinned.trust_ref or entry.trust
        control = {
            "policy": {
                "pinned": str(policy_before.digest),
                "new": str(entry.doc["policy"]["digest"]),
            },
            "trust": {"pinned": str(trust_before.digest), "new": str(entry.trust.digest)},
        }
    elif entry.policy_ref != policy_before or (
        pinned.trust_ref is not None and entry.trust != pinned.trust_ref
    ):
        raise Unjustified("a release entry that changes the pinned policy or trust roots")
    evidence_key = _key(capsule_ref), (_key(trust_ref) if trust_ref is not None else None)
    attestations = memo.evidence.get(evidence_key)
    if attestations is None:  # the same capsule and trust roots: the same evidence
        try:
            attestations = read_evidence(store, capsule, trust)
        except CasError as e:
            raise Unjustified(f"evidence: {e}") from None
        memo.evidence[evidence_key] = attestations
    if [a.ref for a in attestations] != entry.evidence:
        raise Unjustified("its evidence is not the attestations its capsule names")
    covered = _covered(attestations)
    for t in capsule.targets:
        if t.ref is not None and (t.path, str(t.ref.digest), t.ref.size) not in covered:
            raise Unjustified(f"target {t.path} is covered by no signed attestation")
    if capsule.kind == "control":
        _check_control(store, attestations, entry, pinned, own_trust)
    input_ref = ObjectRef.from_dict(decision["input"])
    input_bytes, input_doc = _json(store, input_ref, "decision input")
    allow_list = input_doc.get("allow_list") if isinstance(input_doc, dict) else None
    if not isinstance(allow_list, list) or not all(isinstance(p, str) for p in allow_list):
        raise Unjustified(f"decision input {input_ref.digest}: no allow-list")
    try:
        for t in capsule.targets:
            check_allowed(t.path, allow_list)
    except CasError as e:
        raise Unjustified(str(e)) from None
    rebuilt = _rebuild_input(
        capsule_doc, capsule_ref, capsule, attestations, head, state, allow_list, control
    )
    if rebuilt != input_bytes:
        raise Unjustified(
            f"the decision's input {input_ref.digest} is not the input rebuilt from the"
            f" recorded capsule, evidence, state and trust ({hash_bytes(rebuilt).digest})"
        )
    if replay:
        _replay(store, decision_bytes, decision, input_doc, engine_config)
    return _Pins(entry.policy_ref, entry.trust, own_trust)


def _justify_v1(store: ObjectStore, entry: Entry, state: State) -> None:
    """What applies to an unsigned v1 entry: its capsule's targets, and an allow."""
    from promote.model import load_capsule

    capsule_ref = entry.capsule_ref
    try:
        capsule, _ = load_capsule(_read(store, capsule_ref, "capsule"))
    except CasError as e:
        raise Unjustified(f"capsule {capsule_ref.digest}: {e}") from None
    want = sorted(
        (Change(t.path, state.get(t.path), t.ref) for t in capsule.targets), key=lambda c: c.path
    )
    if entry.changes != want:
        raise Unjustified("its changes are not exactly its capsule's targets against state_before")
    _decision(store, entry.decision_ref)


def _recorded_pins(store: ObjectStore, entry: Entry, pinned: _Pins, memo: _Memo) -> _Pins:
    """The pins an entry that failed records: later entries are checked against what
    the chain says was in force (the failure itself is already reported)."""
    policy = entry.policy_ref
    if entry.trust is None or entry.trust == pinned.trust_ref:
        return attrs.evolve(pinned, policy=policy)
    try:
        return _Pins(policy, entry.trust, _trust(store, entry.trust, memo))
    except Unjustified:
        return attrs.evolve(pinned, policy=policy)


def pins_after(store: ObjectStore, entry: Entry) -> _Pins:
    """The pins a signed entry leaves in force: its policy, and its trust roots as
    the next entry is checked against them.

    Raises:
        Unjustified: a v1 entry (it pins no trust roots: what is in force after it
            depends on the entries before it), or trust roots that cannot be read.
    """
    if entry.trust is None:
        raise Unjustified(f"ledger entry {entry.seq} is unsigned (v1): it pins no trust roots")
    return _Pins(entry.policy_ref, entry.trust, _trust(store, entry.trust))


def _entries(ledger: CommitBackend, start: int = 1) -> Iterator[tuple[int, Entry | IntegrityError]]:
    head = ledger.head()
    for seq in range(start, head.seq + 1):
        try:
            yield seq, parse_entry(ledger.read(seq))
        except IntegrityError as e:
            yield seq, e


@attrs.frozen
class Start:
    """What is in force before entry `seq`: the head and the state the entries before
    it left, and the pins they left (`_next_pins`)."""

    seq: int
    head: Head
    state: State
    pinned: _Pins


def _first(store: ObjectStore, since: tuple[Entry, State] | None) -> Start:
    if since is None:
        return Start(1, Head.genesis(), EMPTY_STATE, _Pins())
    return Start(since[0].seq + 1, since[0].head(), since[1], pins_after(store, since[0]))


def _next_pins(
    store: ObjectStore, entry: Entry, pinned: _Pins, memo: _Memo, allow_unsigned: bool
) -> _Pins:
    """The pins in force after `entry`, whether it re-justifies or not (the next
    entry is checked against what the chain says was in force; a failure is reported
    where it is). A v1 entry reported `unsigned` changes nothing; any other v1 entry
    moves the policy; a v2 entry moves the policy and its trust roots
    (`_recorded_pins`: what a v2 entry that re-justifies leaves, too, as its trust
    roots were read to justify it)."""
    if entry.version == 1:
        if pinned.trust_ref is None and not allow_unsigned:
            return pinned
        return attrs.evolve(pinned, policy=entry.policy_ref)
    return _recorded_pins(store, entry, pinned, memo)


def _walk(
    ledger: CommitBackend,
    store: ObjectStore,
    start: Start,
    stop: int | None,
    memo: _Memo,
    allow_unsigned: bool,
    entries: Iterable[tuple[int, Entry | IntegrityError]] | None = None,
) -> Iterator[tuple[Entry, Start]]:
    """The entries from `start.seq` (up to `stop`, exclusive), each with what is in
    force before it: read from the ledger, or taken from `entries` (seq and parsed
    entry, from `start.seq` on). Ends at a malformed entry or a broken link
    (`verify_ledger` reports those)."""
    head, state, pinned = start.head, start.state, start.pinned
    if entries is None:
        entries = _entries(ledger, start.seq)
    for seq, entry in entries:
        if stop is not None and seq >= stop:
            break
        if isinstance(entry, IntegrityError) or entry.doc["prev"] != (
            str(head.entry) if head.entry else None
        ):
            break
        yield entry, Start(seq, head, state, pinned)
        pinned = _next_pins(store, entry, pinned, memo, allow_unsigned)
        state = state.apply(entry.changes)
        head = entry.head()


def _check(
    store: ObjectStore,
    entry: Entry,
    at: Start,
    memo: _Memo,
    *,
    allow_unsigned: bool,
    replay: bool,
    engine_config: Mapping[str, Any],
) -> Problem | None:
    """Re-justify one entry: None, or the problem naming the first check it fails."""
    where = f"ledger entry {at.seq}"
    try:
        if entry.version == 1:
            if at.pinned.trust_ref is not None:
                raise Unjustified("an unsigned v1 entry after signed v2 entries (a downgrade)")
            if not allow_unsigned:
                raise Unsigned(
                    "unsigned (promote-ledger-entry/v1): verify with --allow-unsigned to accept"
                )
            _justify_v1(store, entry, at.state)
        else:
            _justify_v2(
                store,
                entry,
                at.head,
                at.state,
                at.pinned,
                replay=replay,
                engine_config=engine_config,
                memo=memo,
            )
    except Unsigned as e:
        return Problem("unsigned", where, str(e))
    except (Unjustified, IntegrityError, LinkageError) as e:
        return Problem("unjustified", where, str(e))
    return None


def justify_range(
    ledger: CommitBackend,
    store: ObjectStore,
    start: Start,
    stop: int | None = None,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    engine_config: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Re-justify the entries from `start` (a `range_starts` element, or the first) up
    to `stop` (exclusive): what `justify_ledger` finds for them.

    Raises:
        EngineTimeout, DatabaseError: what reading or replaying could not finish.
    """
    checks = _checks(ledger, store, start, stop, None, allow_unsigned, replay, engine_config)
    return [found for found in checks if found is not None]


def justify_steps(
    ledger: CommitBackend,
    store: ObjectStore,
    entries: Iterable[tuple[int, Entry | IntegrityError]],
    since: tuple[Entry, State] | None = None,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    engine_config: Mapping[str, Any] | None = None,
) -> Iterator[Problem | None]:
    """`justify_ledger`'s checks, one step at a time: for each entry taken from
    `entries` (seq and parsed entry, from the first after `since` on, in order), its
    problem or None. Ends where `justify_ledger` stops (a malformed entry or a broken
    link). Lets `verify_ledger`'s walk hand over the entries it parsed.

    Raises:
        Unjustified: `since` is an entry whose pins cannot be read (`pins_after`),
            at once.
        EngineTimeout, DatabaseError: from a step, as `justify_ledger`.
    """
    first = _first(store, since)  # at once, as justify_ledger, even for no entry
    return _checks(ledger, store, first, None, entries, allow_unsigned, replay, engine_config)


def _checks(
    ledger: CommitBackend,
    store: ObjectStore,
    start: Start,
    stop: int | None,
    entries: Iterable[tuple[int, Entry | IntegrityError]] | None,
    allow_unsigned: bool,
    replay: bool,
    engine_config: Mapping[str, Any] | None,
) -> Iterator[Problem | None]:
    """Each entry's problem or None, from `start` up to `stop`, read from the ledger or
    taken from `entries`: what `justify_range` and `justify_steps` share."""
    memo = _Memo()
    for entry, at in _walk(ledger, store, start, stop, memo, allow_unsigned, entries):
        yield _check(
            store,
            entry,
            at,
            memo,
            allow_unsigned=allow_unsigned,
            replay=replay,
            engine_config=engine_config or {},
        )


def range_starts(
    ledger: CommitBackend,
    store: ObjectStore,
    every: int,
    *,
    since: tuple[Entry, State] | None = None,
    allow_unsigned: bool = False,
) -> tuple[list[Start], int]:
    """Where ranges of `every` entries start, for `justify_range` on several cores,
    and the seq after the last entry to re-justify: one walk over the chain (parse,
    replay, pins) that re-justifies nothing. The ranges together re-justify what
    `justify_ledger` does, in the same order.

    Raises:
        Unjustified: `since` is an entry whose pins cannot be read (`pins_after`).
    """
    first = _first(store, since)
    starts, end = [], first.seq
    for _, at in _walk(ledger, store, first, None, _Memo(), allow_unsigned):
        if (at.seq - first.seq) % every == 0:
            starts.append(at)
        end = at.seq + 1
    return starts, end


def justify_ledger(
    ledger: CommitBackend,
    store: ObjectStore,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    engine_config: Mapping[str, Any] | None = None,
    upto: int | None = None,
    since: tuple[Entry, State] | None = None,
) -> list[Problem]:
    """Re-justify every entry (the first `upto` when given): one problem per entry
    that fails, `unsigned` for a v1 entry (unless `allow_unsigned`), else
    `unjustified`, naming the first check it fails.

    With `since`, a trusted entry (the workspace checkpoint's last, `promote.rollback.
    checkpoint_entry`) and the state it left, only the entries after it, with the pins
    it records in force (`pins_after`).

    Stops at a malformed entry or a broken chain (`verify_ledger` reports those).

    Raises:
        EngineTimeout, DatabaseError: what reading or replaying could not finish.
        Unjustified: `since` is an entry whose pins cannot be read (`pins_after`).
    """
    return justify_range(
        ledger,
        store,
        _first(store, since),
        upto + 1 if upto is not None else None,
        allow_unsigned=allow_unsigned,
        replay=replay,
        engine_config=engine_config,
    )


def require_justified(
    ledger: CommitBackend, store: ObjectStore, upto: int, *, allow_unsigned: bool = True
) -> None:
    """Raise on the first entry up to `upto` that does not re-justify (for `promote
    recover`, before it materializes that state).

    Raises:
        Unjustified (3): one line naming the entry.
    """
    for p in justify_ledger(ledger, store, allow_unsigned=allow_unsigned, upto=upto):
        raise Unjustified(
            f"{p.location} does not re-justify ({p.detail}); not materializing its state:"
            " run 'promote ledger verify'"
        )
