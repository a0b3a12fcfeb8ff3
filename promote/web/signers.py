"""Verified signers of one ledger entry, for the web view.

Each attestation is verified (`promote.attest`: DSSE signatures against the keys of the
trust roots) and so are the entry's runner signature (`entry_signature_ok`) and its VSA
(`promote.justify.check_entry_vsa`). The trust roots are the ones in force for the
entry, as re-justification finds them (`promote.justify`): those the entry before it
pins (a v2 entry's `trust`), else the entry's own. Nothing here raises for a bad
document: what does not verify is shown with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cas.backend import ObjectStore
from cas.digest import ObjectRef
from cas.errors import CasError
from promote.attest.dsse import MAX_ENVELOPE, load_envelope, verify_envelope
from promote.attest.statement import statement_of
from promote.attest.trust import ROLES, TrustRoots
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Entry, entry_signature_ok, parse_entry
from promote.pins import load_pinned_trust

__all__ = ["check_signers", "pinned_trust_ref", "verify_entry"]


def _line(e: Exception) -> str:
    text = str(e).splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def pinned_trust_ref(ledger: CommitBackend, entry: Entry) -> ObjectRef | None:
    """The trust roots in force for `entry`: the previous entry's pin, else its own."""
    if entry.seq > 1:
        try:
            before = parse_entry(ledger.read(entry.seq - 1))
        except CasError:
            before = None
        if before is not None and before.trust is not None:
            return before.trust
    return entry.trust


def _attestation(store: ObjectStore, ref: ObjectRef, trust: TrustRoots) -> dict[str, Any]:
    out: dict[str, Any] = {
        "digest": str(ref.digest),
        "signers": [],
        "roles": [],
        "predicate_type": None,
        "problem": None,
    }
    try:
        envelope = load_envelope(store.read_bytes(ref.digest, limit=MAX_ENVELOPE))
        found = verify_envelope(envelope, trust.keys)
        out["predicate_type"] = statement_of(envelope).predicate_type
    except CasError as e:
        out["problem"] = _line(e)
        return out
    ids = frozenset(trust.signer_of(k).id for k in found.verified)
    out["signers"] = [
        {
            "role": ", ".join(trust.signer_of(k).roles),
            "keyid": k,
            "signer": trust.signer_of(k).id,
            "verified": True,
        }
        for k in sorted(found.verified)
    ]
    out["signers"] += [
        {"role": "signer", "keyid": s.keyid, "signer": None, "verified": False}
        for s in envelope.signatures
        if s.keyid not in found.verified
    ]
    out["roles"] = [r for r in ROLES if len(ids & trust.holders(r)) >= trust.thresholds[r]]
    if not ids:
        out["problem"] = "no signature verifies against the pinned trust roots"
    return out


def _vsa(store: ObjectStore, entry: Entry, trust: TrustRoots, own: TrustRoots) -> dict[str, Any]:
    from promote.justify import check_entry_vsa

    ref = entry.vsa
    assert ref is not None
    out: dict[str, Any] = {"ref": ref.to_dict(), "verified": False, "problem": None}
    try:
        envelope = load_envelope(store.read_bytes(ref.digest, limit=MAX_ENVELOPE))
        pred = statement_of(envelope).predicate
        verifier = pred.get("verifier")
        out.update(
            predicate_type=statement_of(envelope).predicate_type,
            verifier=verifier.get("id") if isinstance(verifier, Mapping) else None,
            result=pred.get("verificationResult"),
            levels=[str(v) for v in pred.get("verifiedLevels") or []],
            resource=pred.get("resourceUri"),
        )
        check_entry_vsa(store, entry, trust, own)
    except CasError as e:
        out["problem"] = _line(e)
        return out
    out["verified"] = True
    return out


def _trust(store: ObjectStore, ref: ObjectRef, cache: dict[str, TrustRoots] | None) -> TrustRoots:
    key = str(ref.digest)
    if cache is not None and key in cache:
        return cache[key]
    trust = load_pinned_trust(store, ref)
    if cache is not None:
        if len(cache) >= 64:
            cache.pop(next(iter(cache)))
        cache[key] = trust
    return trust


def verify_entry(
    ledger: CommitBackend,
    store: ObjectStore,
    entry: Entry,
    *,
    vsa: bool = True,
    trust_cache: dict[str, TrustRoots] | None = None,
) -> dict[str, Any]:
    """The verified signers of `entry`: the trust roots used, the runner who signed
    it, each attestation (signers, roles met, predicate type) and, with `vsa`, the VSA.
    A v1 entry (unsigned) gives `signed: False` and nothing verified. `trust_cache`:
    trust roots already loaded, by digest (they never change)."""
    out: dict[str, Any] = {
        "signed": entry.signed,
        "trust": None,
        "runner": None,
        "attestations": [],
        "vsa": None,
        "problem": None,
    }
    if not entry.signed or entry.trust is None:
        return out
    ref = pinned_trust_ref(ledger, entry)
    assert ref is not None
    out["trust"] = ref.to_dict()
    try:
        trust = _trust(store, ref, trust_cache)
        own = trust if ref == entry.trust else _trust(store, entry.trust, trust_cache)
    except CasError as e:
        out["problem"] = f"trust roots {ref.digest}: {_line(e)}"
        return out
    kid = entry.doc["signature"]["keyid"]
    runner: dict[str, Any] = {"role": "runner", "keyid": kid, "signer": None, "verified": False}
    try:
        runner.update(signer=entry_signature_ok(entry, trust), verified=True)
    except CasError as e:
        runner["problem"] = _line(e)
    out["runner"] = runner
    out["attestations"] = [_attestation(store, r, trust) for r in entry.evidence]
    if vsa and entry.vsa is not None:
        out["vsa"] = _vsa(store, entry, trust, own)
    return out


def check_signers(verified: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The verified signers of the attestations that meet the checker role, once each."""
    seen: dict[str, dict[str, Any]] = {}
    for a in verified.get("attestations") or []:
        if "checker" not in a["roles"]:
            continue
        for s in a["signers"]:
            if s["verified"] and s["keyid"] not in seen:
                seen[s["keyid"]] = {**s, "role": "checker"}
    return list(seen.values())
