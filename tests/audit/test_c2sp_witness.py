"""Witnesses (promote/ledger/witness.py): cosign only what extends the last cosigned
checkpoint, keep that state per witness, and let clients require N cosignatures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cas.errors import EXIT_CONFLICT, EXIT_INTEGRITY
from promote.ledger.checkpoint import (
    ForeignLog,
    MalformedCheckpoint,
    TlogCheckpoint,
    ledger_origin,
    open_checkpoint,
    sign_checkpoint,
)
from promote.ledger.merkle import (
    BLAKE3_TREE,
    SHA256_TREE,
    ProofError,
    consistency_proof,
    root,
    verify_consistency,
)
from promote.ledger.note import (
    BadNoteSignature,
    InvalidNoteKey,
    Note,
    Signer,
    UnverifiedNote,
    open_note,
    parse_note,
)
from promote.ledger.witness import (
    MAX_FUTURE_SECONDS,
    ForkDetected,
    FutureCosignature,
    LogConfig,
    MissingCosignatures,
    OldSizeMismatch,
    RollbackRefused,
    UnknownLog,
    Witness,
    WitnessStateError,
    add_cosignatures,
    verify_cosigned,
)

ORIGIN = ledger_origin("example.com/releases")
NOW = 1_760_000_000


def leaves(n: int, tag: str = "") -> list[bytes]:
    return [BLAKE3_TREE.leaf(f"{tag}entry {i}".encode()) for i in range(n)]


class Log:
    """A toy log: leaf hashes, signed C2SP checkpoints, consistency proofs."""

    def __init__(self, origin: str = ORIGIN) -> None:
        self.signer = Signer.generate(origin)
        self.config = LogConfig(origin, (self.signer.verifier(),))

    def checkpoint(self, n: int, tag: str = "") -> bytes:
        cp = TlogCheckpoint(self.signer.name, n, root(BLAKE3_TREE, leaves(n, tag)))
        return sign_checkpoint(cp, self.signer)

    def proof(self, old: int, new: int, tag: str = "") -> list[bytes]:
        return consistency_proof(BLAKE3_TREE, old, leaves(new, tag))


@pytest.fixture
def log() -> Log:
    return Log()


def witness(tmp_path: Path, log: Log, name: str = "witness.example/w1") -> Witness:
    return Witness(
        Signer.generate(name), tmp_path / name.replace("/", "_"), [log.config], lambda: NOW
    )


def test_the_origin_names_blake3_and_the_log_key_is_named_as_the_origin(log: Log) -> None:
    assert ORIGIN == "example.com/releases/blake3"
    assert log.config.hasher is BLAKE3_TREE
    assert LogConfig.from_vkey(log.signer.verifier().vkey()) == log.config
    other = Signer.generate("example.com/other/blake3")
    with pytest.raises(InvalidNoteKey, match="must be the origin"):
        sign_checkpoint(TlogCheckpoint(ORIGIN, 1, bytes(32)), other)
    with pytest.raises(InvalidNoteKey):
        ledger_origin("has space")


def test_a_sha256_verifier_does_not_verify_a_blake3_root(tmp_path: Path) -> None:
    """What the ADR states: the same structure over SHA-256 gives other roots, so a
    standard tlog client checks our signatures but not our proofs."""
    old = [f"entry {i}".encode() for i in range(3)]
    new = [*old, b"entry 3", b"entry 4"]
    b3 = [BLAKE3_TREE.leaf(d) for d in new]
    proof = consistency_proof(BLAKE3_TREE, 3, b3)
    verify_consistency(BLAKE3_TREE, 3, 5, proof, root(BLAKE3_TREE, b3[:3]), root(BLAKE3_TREE, b3))
    sha = [SHA256_TREE.leaf(d) for d in new]
    assert root(SHA256_TREE, sha) != root(BLAKE3_TREE, b3)
    with pytest.raises(ProofError):
        verify_consistency(
            SHA256_TREE, 3, 5, proof, root(BLAKE3_TREE, b3[:3]), root(BLAKE3_TREE, b3)
        )
    # a witness that takes the log for a standard SHA-256 one (no /blake3 in the
    # origin) refuses a BLAKE3 extension as a fork
    sha_log = Log("example.com/releases")
    assert sha_log.config.hasher is SHA256_TREE
    w = witness(tmp_path, sha_log)
    w.cosign(sha_log.checkpoint(3))
    with pytest.raises(ForkDetected):
        w.cosign(sha_log.checkpoint(5), sha_log.proof(3, 5))


def test_cosign_first_then_extend(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    cp3 = log.checkpoint(3)
    sig = w.cosign(cp3)
    assert w.last(ORIGIN) == TlogCheckpoint.parse(parse_note(cp3).text)
    cosigned = add_cosignatures(cp3, sig)
    assert cosigned == cp3 + sig.line().encode()
    opened = open_note(cosigned, [w.verifier()])
    assert opened.verified == (sig,)

    cp7 = log.checkpoint(7)
    w.cosign(cp7, log.proof(3, 7), old_size=3)
    last = w.last(ORIGIN)
    assert last is not None and last.size == 7
    assert (w.state_dir / "witness.vkey").read_text() == w.verifier().vkey() + "\n"


def test_same_checkpoint_again_is_cosigned_again(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    cp = log.checkpoint(4)
    w.cosign(cp)
    assert w.cosign(cp).key == w.verifier().key
    with pytest.raises(ForkDetected, match="must be empty"):
        w.cosign(cp, log.proof(2, 4))


def test_forked_checkpoint_is_refused(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(5))
    state = (w.state_dir / next(p.name for p in w.state_dir.glob("*.checkpoint"))).read_bytes()
    with pytest.raises(ForkDetected, match="another root") as e:
        w.cosign(log.checkpoint(5, tag="fork"))
    assert e.value.exit_code == EXIT_INTEGRITY
    # a larger tree of another history, with a proof from its own 5-leaf prefix
    with pytest.raises(ForkDetected, match="does not extend size 5"):
        w.cosign(log.checkpoint(9, tag="fork"), log.proof(5, 9, tag="fork"))
    # the right history, a wrong proof
    with pytest.raises(ForkDetected):
        w.cosign(log.checkpoint(9), log.proof(4, 9))
    assert next(iter(w.state_dir.glob("*.checkpoint"))).read_bytes() == state


def test_smaller_tree_is_refused(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(6))
    with pytest.raises(RollbackRefused, match="smaller than 6"):
        w.cosign(log.checkpoint(5))
    last = w.last(ORIGIN)
    assert last is not None and last.size == 6


def test_old_size_must_be_the_witness_s(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(2))
    with pytest.raises(OldSizeMismatch, match="at size 2, not 1") as e:
        w.cosign(log.checkpoint(4), log.proof(1, 4), old_size=1)
    assert e.value.exit_code == EXIT_CONFLICT


def test_the_log_signature_is_checked_first(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    impostor = Signer.generate(ORIGIN)  # same name, another key: an unknown key
    cp = TlogCheckpoint(ORIGIN, 1, root(BLAKE3_TREE, leaves(1)))
    with pytest.raises(UnverifiedNote):
        w.cosign(sign_checkpoint(cp, impostor))
    good = log.checkpoint(3)
    body = parse_note(good).text
    tampered = good.replace(body.encode(), body.replace("\n3\n", "\n4\n").encode())
    with pytest.raises(BadNoteSignature):
        w.cosign(tampered)
    assert w.last(ORIGIN) is None


def test_a_root_of_another_length_is_malformed(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    with pytest.raises(MalformedCheckpoint, match="16 bytes"):
        w.cosign(sign_checkpoint(TlogCheckpoint(ORIGIN, 1, bytes(16)), log.signer))


def test_unknown_log_is_refused(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    other = Log(ledger_origin("example.com/other"))
    with pytest.raises(UnknownLog, match=r"example\.com/other/blake3"):
        w.cosign(other.checkpoint(1))


def test_state_belongs_to_one_witness_key(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(1))
    thief = Witness(Signer.generate("witness.example/w1"), w.state_dir, [log.config])
    with pytest.raises(WitnessStateError, match="belongs to"):
        thief.cosign(log.checkpoint(2), log.proof(1, 2))


def test_damaged_state_is_refused(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(1))
    state = next(iter(w.state_dir.glob("*.checkpoint")))
    state.write_bytes(b"garbage")
    with pytest.raises(WitnessStateError):
        w.cosign(log.checkpoint(2), log.proof(1, 2))


def test_state_is_per_witness(tmp_path: Path, log: Log) -> None:
    w1, w2 = witness(tmp_path, log, "witness.example/w1"), witness(tmp_path, log, "w2")
    w1.cosign(log.checkpoint(8))
    w2.cosign(log.checkpoint(3))  # w2 has seen nothing: 3 is fine for it
    with pytest.raises(RollbackRefused):
        w1.cosign(log.checkpoint(3))


def test_concurrent_cosigns_never_move_the_state_back(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.cosign(log.checkpoint(1))
    done: list[int] = []
    errors: list[Exception] = []

    def go(n: int) -> None:
        try:
            last = w.last(ORIGIN)
            assert last is not None
            w.cosign(log.checkpoint(n), log.proof(last.size, n))
            done.append(n)
        except (RollbackRefused, ForkDetected) as e:  # a racer moved the state first
            errors.append(e)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(2, 14)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = w.last(ORIGIN)
    assert last is not None and last.size == max(done)
    assert len(done) + len(errors) == 12


# -- clients: N cosignatures --------------------------------------------------------


@pytest.fixture
def cosigned(tmp_path: Path, log: Log) -> tuple[bytes, list[Witness]]:
    ws = [witness(tmp_path, log, f"witness.example/w{i}") for i in range(3)]
    cp = log.checkpoint(5)
    return add_cosignatures(cp, *(w.cosign(cp) for w in ws[:2])), ws


def test_n_cosignatures_are_required(log: Log, cosigned: tuple[bytes, list[Witness]]) -> None:
    data, ws = cosigned
    keys = [w.verifier() for w in ws]
    got = verify_cosigned(data, log.config, keys, 2, now=NOW)
    assert got.cosigners == tuple(keys[:2]) and got.timestamps == (NOW, NOW)
    assert got.checkpoint.size == 5
    with pytest.raises(MissingCosignatures, match=r"2 of 3 required.*witness.example/w2\+"):
        verify_cosigned(data, log.config, keys, 3, now=NOW)


def test_a_missing_cosignature(log: Log, cosigned: tuple[bytes, list[Witness]]) -> None:
    _, ws = cosigned
    with pytest.raises(MissingCosignatures, match="0 of 1"):
        verify_cosigned(log.checkpoint(5), log.config, [ws[0].verifier()], 1, now=NOW)


def test_a_cosignature_by_an_unknown_key_does_not_count(
    tmp_path: Path, log: Log, cosigned: tuple[bytes, list[Witness]]
) -> None:
    _, ws = cosigned
    # a trusted witness's name, another key
    stranger = Witness(Signer.generate("witness.example/w0"), tmp_path / "s", [log.config])
    cp = log.checkpoint(5)
    data = add_cosignatures(cp, stranger.cosign(cp))
    with pytest.raises(MissingCosignatures):
        verify_cosigned(data, log.config, [ws[0].verifier()], 1, now=NOW)
    # and is kept, unverified, when the log alone is asked for
    assert verify_cosigned(data, log.config, [], 0, now=NOW).note.unverified[0].name == (
        "witness.example/w0"
    )


def test_a_mutated_body_is_refused(log: Log, cosigned: tuple[bytes, list[Witness]]) -> None:
    data, ws = cosigned
    body = parse_note(data).text
    bad = data.replace(body.encode(), body.replace("\n5\n", "\n6\n").encode())
    with pytest.raises(BadNoteSignature):
        verify_cosigned(bad, log.config, [w.verifier() for w in ws], 1, now=NOW)


def test_a_cosignature_moved_to_another_checkpoint_is_refused(
    log: Log, cosigned: tuple[bytes, list[Witness]]
) -> None:
    data, ws = cosigned
    line = parse_note(data).signatures[1]
    moved = add_cosignatures(log.checkpoint(6), line)
    with pytest.raises(BadNoteSignature, match=r"witness\.example/w0"):
        verify_cosigned(moved, log.config, [ws[0].verifier()], 1, now=NOW)


def test_another_log_and_no_log_signature(log: Log, cosigned: tuple[bytes, list[Witness]]) -> None:
    data, ws = cosigned
    keys = [w.verifier() for w in ws]
    other = Log(ledger_origin("example.com/other"))
    with pytest.raises(ForeignLog, match=r"example\.com/other/blake3"):
        verify_cosigned(other.checkpoint(5), log.config, keys, 0, now=NOW)
    cosigs_only = Note(parse_note(data).text, parse_note(data).signatures[1:]).encode()
    with pytest.raises(UnverifiedNote, match="not signed by the log"):
        verify_cosigned(cosigs_only, log.config, keys, 2, now=NOW)


def test_a_cosignature_from_the_future_is_refused(tmp_path: Path, log: Log) -> None:
    w = witness(tmp_path, log)
    w.clock = lambda: NOW + MAX_FUTURE_SECONDS + 1
    cp = log.checkpoint(1)
    data = add_cosignatures(cp, w.cosign(cp))
    with pytest.raises(FutureCosignature):
        verify_cosigned(data, log.config, [w.verifier()], 1, now=NOW)
    assert verify_cosigned(data, log.config, [w.verifier()], 1, now=NOW + 1).timestamps


def test_witness_keys_must_be_cosignature_keys(
    log: Log, cosigned: tuple[bytes, list[Witness]]
) -> None:
    data, ws = cosigned
    plain = Signer.generate("witness.example/w0").verifier()
    with pytest.raises(InvalidNoteKey, match="0x04"):
        verify_cosigned(data, log.config, [plain], 1, now=NOW)
    with pytest.raises(InvalidNoteKey, match="2 cosignatures required, 1"):
        verify_cosigned(data, log.config, [ws[0].verifier()], 2, now=NOW)


def test_open_checkpoint_checks_the_log(log: Log) -> None:
    data = log.checkpoint(2)
    got = open_checkpoint(data, log.config.keys, origin=ORIGIN)
    assert got.checkpoint.size == 2
    with pytest.raises(ForeignLog):
        open_checkpoint(data, log.config.keys, origin="example.com/x/blake3")
    with pytest.raises(UnverifiedNote):
        open_checkpoint(data, [Signer.generate(ORIGIN).verifier()])
