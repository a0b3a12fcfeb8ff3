"""Ledger proofs as a library: built through the CommitBackend API, checked offline."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import blake3
import pytest
from audit.ledgers import MemoryLedger, synthetic_ledger, write_keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given
from hypothesis import strategies as st

from cas.digest import Digest
from cas.errors import IntegrityError, UsageError
from promote.canonical import canonical
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Entry, Head
from promote.ledger.merkle import BLAKE3_TREE, ProofError, root
from promote.ledger.proofs import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    entry_leaf,
    ledger_checkpoint,
    load_checkpoint,
    load_private_key,
    load_proof,
    load_public_key,
    prove_consistency,
    prove_inclusion,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from promote.model import State


@pytest.fixture(scope="module")
def seven() -> MemoryLedger:
    return synthetic_ledger(7)


def test_checkpoint_is_the_tree_over_entry_digests(seven: MemoryLedger) -> None:
    cp = ledger_checkpoint(seven)
    leaves = [BLAKE3_TREE.h(b"\x00" + blake3.blake3(data).digest()) for data in seven.entries()]
    assert cp == Checkpoint(7, root(BLAKE3_TREE, leaves))
    assert [entry_leaf(d) for d in seven.entries()] == leaves
    assert ledger_checkpoint(seven, 4) == ledger_checkpoint(MemoryLedger(seven.data[:4]))
    assert ledger_checkpoint(MemoryLedger()) == Checkpoint(0, blake3.blake3(b"").digest())


def test_checkpoint_beyond_the_head_is_a_usage_error(seven: MemoryLedger) -> None:
    with pytest.raises(UsageError):
        ledger_checkpoint(seven, 8)


@pytest.mark.parametrize("size", [None, 1, 5, 7])
def test_every_inclusion_proof_verifies(seven: MemoryLedger, size: int | None) -> None:
    n = size or 7
    cp = ledger_checkpoint(seven, size)
    for seq in range(1, n + 1):
        proof, entry = prove_inclusion(seven, seq, size)
        assert entry == seven.read(seq)
        assert (proof.seq, proof.tree_size) == (seq, n)
        assert proof.entry == Digest("blake3", blake3.blake3(entry).hexdigest())
        verify_inclusion_proof(proof, entry, cp)


def test_every_consistency_proof_verifies(seven: MemoryLedger) -> None:
    for new in range(0, 8):
        cp_new = ledger_checkpoint(seven, new)
        for old in range(0, new + 1):
            proof = prove_consistency(seven, old, new)
            verify_consistency_proof(proof, ledger_checkpoint(seven, old), cp_new)


@pytest.mark.parametrize(
    ("seq", "size"), [(0, None), (8, None), (5, 4)], ids=["zero", "beyond-head", "beyond-size"]
)
def test_prove_out_of_range(seven: MemoryLedger, seq: int, size: int | None) -> None:
    with pytest.raises(UsageError):
        prove_inclusion(seven, seq, size)


def test_prove_consistency_out_of_range(seven: MemoryLedger) -> None:
    with pytest.raises(UsageError):
        prove_consistency(seven, 5, 4)


# -- what verification must reject ---------------------------------------------------


def test_rejects_a_tampered_entry(seven: MemoryLedger) -> None:
    cp = ledger_checkpoint(seven)
    proof, entry = prove_inclusion(seven, 3, None)
    tampered = entry.replace(b'"seq":3', b'"seq":3 ')
    with pytest.raises(ProofError, match="hashes to"):
        verify_inclusion_proof(proof, tampered, cp)
    # even with the proof edited to name the tampered entry, the path cannot lead to the root
    forged = attrs.evolve(proof, entry=Digest("blake3", blake3.blake3(tampered).hexdigest()))
    with pytest.raises(ProofError, match="root"):
        verify_inclusion_proof(forged, tampered, cp)


def test_rejects_a_wrong_index(seven: MemoryLedger) -> None:
    cp = ledger_checkpoint(seven)
    proof, entry = prove_inclusion(seven, 3, None)
    for index in (1, 3, 6):
        with pytest.raises(ProofError):
            verify_inclusion_proof(attrs.evolve(proof, leaf_index=index), entry, cp)
    # the proof of entry 3 does not prove entry 4
    with pytest.raises(ProofError):
        verify_inclusion_proof(proof, seven.read(4), cp)


def test_rejects_a_proof_for_another_tree_size(seven: MemoryLedger) -> None:
    proof, entry = prove_inclusion(seven, 3, 5)
    with pytest.raises(ProofError, match="5 entries"):
        verify_inclusion_proof(proof, entry, ledger_checkpoint(seven))
    with pytest.raises(ProofError):
        verify_inclusion_proof(attrs.evolve(proof, tree_size=7), entry, ledger_checkpoint(seven))


def test_rejects_a_forked_log(seven: MemoryLedger) -> None:
    honest = synthetic_ledger(2, "later", start=seven)  # 9 entries
    # the fork shares entries 1-4, then rewrites history from entry 5 on
    fork = synthetic_ledger(5, "fork", start=MemoryLedger(seven.data[:4]))
    assert fork.data[:4] == honest.data[:4] and fork.data[4] != honest.data[4]
    saved = ledger_checkpoint(honest, 6)  # what an auditor saw earlier
    # a consistency proof from the fork cannot extend the auditor's checkpoint
    with pytest.raises(ProofError, match="forked"):
        verify_consistency_proof(prove_consistency(fork, 6), saved, ledger_checkpoint(fork))
    # nor can the fork's own checkpoint at the same size pass for the honest one
    with pytest.raises(ProofError, match="forked"):
        verify_consistency_proof(prove_consistency(fork, 6, 6), saved, ledger_checkpoint(fork, 6))
    # an entry of the fork is not in the honest log, and the other way round
    proof, entry = prove_inclusion(fork, 5, None)
    with pytest.raises(ProofError):
        verify_inclusion_proof(proof, entry, ledger_checkpoint(honest))
    proof, entry = prove_inclusion(honest, 5, None)
    with pytest.raises(ProofError):
        verify_inclusion_proof(attrs.evolve(proof, tree_size=9), entry, ledger_checkpoint(fork))
    # the shared prefix is still provably shared
    verify_consistency_proof(
        prove_consistency(fork, 4), ledger_checkpoint(honest, 4), ledger_checkpoint(fork)
    )


def test_consistency_proof_must_match_the_checkpoints(seven: MemoryLedger) -> None:
    proof = prove_consistency(seven, 3)
    with pytest.raises(ProofError, match="sizes"):
        verify_consistency_proof(proof, ledger_checkpoint(seven, 2), ledger_checkpoint(seven))
    with pytest.raises(ProofError):
        verify_consistency_proof(
            attrs.evolve(proof, old_size=2), ledger_checkpoint(seven, 2), ledger_checkpoint(seven)
        )


# -- the ledger is read through the backend, and its chain is checked on the way --------


def test_a_broken_chain_is_refused(seven: MemoryLedger) -> None:
    edited = list(seven.data)
    edited[2] = edited[2].replace(b"release/app.whl", b"release/evil.whl")
    with pytest.raises(IntegrityError, match="entry 4 does not link"):
        ledger_checkpoint(MemoryLedger(edited))
    swapped = [*seven.data[:2], seven.data[3], seven.data[2], *seven.data[4:]]
    with pytest.raises(IntegrityError, match="entry 3 does not link"):
        ledger_checkpoint(MemoryLedger(swapped))
    dropped = seven.data[:2] + seven.data[3:]
    with pytest.raises(IntegrityError, match="does not link"):
        ledger_checkpoint(MemoryLedger(dropped))


class _Streaming(CommitBackend):
    """Only `head()` and `entries()`: checkpoints need nothing else."""

    location = "stream"

    def __init__(self, inner: MemoryLedger) -> None:
        self.inner = inner

    def head(self) -> Head:
        return self.inner.head()

    def read(self, seq: int) -> bytes:
        raise AssertionError("read() should not be needed: entries() streams")

    def entries(self, start: int = 1) -> Iterator[bytes]:
        yield from self.inner.data[start - 1 :]

    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        raise NotImplementedError


def test_only_the_backend_api_is_used(seven: MemoryLedger) -> None:
    assert ledger_checkpoint(_Streaming(seven)) == ledger_checkpoint(seven)
    proof, entry = prove_inclusion(_Streaming(seven), 2, None)
    verify_inclusion_proof(proof, entry, ledger_checkpoint(seven))


# -- signatures --------------------------------------------------------------------


def test_signed_checkpoint(seven: MemoryLedger, tmp_path: Path) -> None:
    priv_path, pub_path = write_keypair(tmp_path)
    key, pub = load_private_key(priv_path), load_public_key(pub_path)
    cp = ledger_checkpoint(seven).sign(key)
    assert cp.note() == f"promote-checkpoint/v1\n7\n{cp.root.hex()}\n".encode()
    cp.check_signature(pub)
    assert cp.sign(key) == cp  # signing again with the same key replaces, deterministic
    assert load_checkpoint(canonical(cp.to_dict())) == cp
    proof, entry = prove_inclusion(seven, 7, None)
    verify_inclusion_proof(proof, entry, cp, pub)

    other = Ed25519PrivateKey.generate()
    with pytest.raises(ProofError, match="not signed by"):
        cp.check_signature(other.public_key())
    co_signed = cp.sign(other)
    assert len(co_signed.signatures) == 2
    co_signed.check_signature(pub)
    co_signed.check_signature(other.public_key())

    with pytest.raises(ProofError, match="not signed"):
        verify_inclusion_proof(proof, entry, ledger_checkpoint(seven), pub)
    moved = attrs.evolve(cp, size=6, root=ledger_checkpoint(seven, 6).root)
    with pytest.raises(ProofError, match="does not verify"):
        moved.check_signature(pub)
    old = ledger_checkpoint(seven, 3)
    with pytest.raises(ProofError, match="old checkpoint"):
        verify_consistency_proof(prove_consistency(seven, 3), old, cp, pub)
    verify_consistency_proof(prove_consistency(seven, 3), old.sign(key), cp, pub)


@pytest.mark.parametrize(
    ("content", "loader"),
    [
        (b"not a key", load_private_key),
        (b"not a key", load_public_key),
    ],
    ids=["private", "public"],
)
def test_bad_key_files(tmp_path: Path, content: bytes, loader: Any) -> None:
    p = tmp_path / "key.pem"
    p.write_bytes(content)
    with pytest.raises(UsageError):
        loader(p)
    with pytest.raises(UsageError):
        loader(tmp_path / "missing.pem")


def test_key_of_the_wrong_kind(tmp_path: Path) -> None:
    priv, pub = write_keypair(tmp_path)
    with pytest.raises(UsageError):
        load_private_key(pub)
    with pytest.raises(UsageError):
        load_public_key(priv)


# -- the documents: exact round trips, strict parsing --------------------------------


def test_round_trips(seven: MemoryLedger) -> None:
    key = Ed25519PrivateKey.generate()
    cp = ledger_checkpoint(seven).sign(key)
    inc, _ = prove_inclusion(seven, 5, None)
    con = prove_consistency(seven, 3)
    for doc, cls in [(cp, Checkpoint), (inc, InclusionProof), (con, ConsistencyProof)]:
        d = doc.to_dict()
        frozen = copy.deepcopy(d)
        assert cls.from_dict(d) == doc  # type: ignore[attr-defined]
        assert d == frozen  # from_dict never mutates
    assert load_proof(canonical(inc.to_dict())) == inc
    assert load_proof(canonical(con.to_dict())) == con


def _inclusion_doc() -> dict[str, Any]:
    return InclusionProof(
        2, 5, Digest("blake3", "a" * 64), (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    ).to_dict()


def _cp_doc() -> dict[str, Any]:
    return Checkpoint(5, b"\x07" * 32).sign(Ed25519PrivateKey.generate()).to_dict()


BAD_PROOFS = {
    "not-json": b"{",
    "not-object": b"[]",
    "unknown-schema": b'{"schema": "promote-inclusion-proof/v2"}',
    "extra-key": {**_inclusion_doc(), "root": "00" * 32},
    "missing-key": {k: v for k, v in _inclusion_doc().items() if k != "path"},
    "bool-index": {**_inclusion_doc(), "leaf_index": True},
    "negative-index": {**_inclusion_doc(), "leaf_index": -1},
    "zero-size": {**_inclusion_doc(), "tree_size": 0},
    "uppercase-hex": {**_inclusion_doc(), "path": ["AA" * 32]},
    "short-hash": {**_inclusion_doc(), "path": ["aa" * 31]},
    "path-not-list": {**_inclusion_doc(), "path": "aa" * 32},
    "path-too-long": {**_inclusion_doc(), "path": ["aa" * 32] * 65},
    "bad-entry-digest": {**_inclusion_doc(), "entry": "sha256:" + "a" * 64},
    "consistency-float": {
        "schema": "promote-consistency-proof/v1",
        "old_size": 1.5,
        "new_size": 3,
        "path": [],
    },
}


@pytest.mark.parametrize("doc", BAD_PROOFS.values(), ids=BAD_PROOFS.keys())
def test_bad_proofs_are_invalid_documents(doc: bytes | dict[str, Any]) -> None:
    data = doc if isinstance(doc, bytes) else canonical(doc)
    with pytest.raises(InvalidDocument):
        load_proof(data)


def _sig(**kw: Any) -> dict[str, Any]:
    d = _cp_doc()
    d["signatures"][0].update(kw)
    return d


BAD_CHECKPOINTS = {
    "no-signatures-key": {k: v for k, v in _cp_doc().items() if k != "signatures"},
    "signatures-not-list": {**_cp_doc(), "signatures": {}},
    "root-hex": {**_cp_doc(), "root": "xyz"},
    "size-string": {**_cp_doc(), "size": "5"},
    "sig-algorithm": _sig(algorithm="rsa"),
    "sig-base64": _sig(signature="***"),
    "sig-length": _sig(signature="AAAA"),
    "sig-key-id": _sig(key_id="nope"),
    "sig-extra": _sig(extra=1),
}


@pytest.mark.parametrize("doc", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_bad_checkpoints_are_invalid_documents(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidDocument):
        load_checkpoint(canonical(doc))


# -- speed --------------------------------------------------------------------------


class _FastLedger(CommitBackend):
    """100,000 linked entries made from a byte template (build_entry is too slow for that)."""

    location = "fast"

    def __init__(self, n: int) -> None:
        self.data: list[bytes] = []
        prev = b"null"
        for seq in range(1, n + 1):
            data = (
                b'{"changes":[],"prev":%s,"schema":"promote-ledger-entry/v1","seq":%d,"x":"%s"}'
                % (prev, seq, b"y" * 800)
            )
            self.data.append(data)
            prev = b'"blake3:%s"' % blake3.blake3(data).hexdigest().encode()
        self.last = Digest("blake3", prev[8:-1].decode())

    def head(self) -> Head:
        return Head(len(self.data), self.last, State().ref())

    def read(self, seq: int) -> bytes:
        return self.data[seq - 1]

    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        raise NotImplementedError


def test_checkpoint_of_100k_entries() -> None:
    """A checkpoint and a proof over a large ledger (how long it takes is the
    benchmark's business, not a test's)."""
    ledger = _FastLedger(100_000)
    cp = ledger_checkpoint(ledger)
    assert cp.size == 100_000
    proof, entry = prove_inclusion(ledger, 54_321, None)
    verify_inclusion_proof(proof, entry, cp)
    assert len(proof.path) == 17


# -- hostile input: only our typed error, never a traceback --------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
_near_valid = st.fixed_dictionaries(
    {
        "schema": st.sampled_from(
            ["promote-inclusion-proof/v1", "promote-consistency-proof/v1", "promote-checkpoint/v1"]
        ),
    },
    optional={
        "leaf_index": _json,
        "tree_size": _json,
        "old_size": _json,
        "new_size": _json,
        "size": _json,
        "entry": _json,
        "root": _json,
        "path": st.lists(st.sampled_from(["00" * 32, "AB" * 32, "0", ""]), max_size=3) | _json,
        "signatures": _json,
    },
)


@given(st.one_of(_json, _near_valid))
@example(
    {
        "schema": "promote-inclusion-proof/v1",
        "leaf_index": 0,
        "tree_size": 1,
        "entry": 1,
        "path": [],
    }
)
@example({"schema": "promote-checkpoint/v1", "size": 0, "root": "00" * 32, "signatures": [None]})
def test_loaders_raise_only_invalid_document(doc: Any) -> None:
    data = json.dumps(doc).encode()
    for loader in (load_proof, load_checkpoint):
        try:
            loader(data)
        except InvalidDocument:
            pass
