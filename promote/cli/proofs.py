"""The commands for checkpoints and Merkle proofs over the ledger.

    promote ledger checkpoint [--size N] [--sign-key FILE] [--log-name NAME] [-o FILE]
    promote ledger checkpoint --json [--size N] [--sign-key FILE] [-o FILE]
    promote ledger prove SEQ [--size N] [-o FILE] [--entry-out FILE]
    promote ledger prove --consistency OLD_SIZE [--size N] [-o FILE]
    promote ledger verify-proof PROOF --checkpoint FILE [--entry FILE]
                                [--old-checkpoint FILE] [--verify-key FILE] [--json]

A checkpoint is a C2SP signed note (the default, ADR 12: origin `<log name>/blake3`,
signed by the runner key unless `--sign-key`; `--note` is accepted and changes
nothing), or the older `promote-checkpoint/v1` JSON (`--json`, kept for one release),
which `verify-proof` and `promote verify --checkpoint` still read and
`.promote/checkpoint.json` (promote.rollback) still is; they are told apart by the
first byte.

`verify-proof` needs no workspace: it reads only the files it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cas._cli import emit_json, json_option, path_option
from cas.errors import UsageError
from promote.canonical import pretty
from promote.cli.common import (
    opened,
    read_input,
    write_output,
)


@click.command(name="checkpoint")
@click.option("--size", type=click.IntRange(min=0), help="Entries to cover (default: all).")
@path_option(
    "--sign-key",
    help="Sign with this Ed25519 private key (PEM, PKCS#8) instead of the runner key;"
    " with --json, any supported key.",
)
@json_option("The older promote-checkpoint/v1 JSON document (kept for one release).")
@path_option("-o", "--output", help="Also write the checkpoint here.")
@click.option(
    "--note", "as_note", is_flag=True, hidden=True, help="The default (kept for scripts)."
)
@click.option("--log-name", help="The log's name: origin NAME/blake3 (default: see ADR 12).")
@click.pass_context
def checkpoint_cmd(
    ctx: click.Context,
    size: int | None,
    sign_key: Path | None,
    as_json: bool,
    output: Path | None,
    as_note: bool,
    log_name: str | None,
) -> None:
    """The size and Merkle root of the ledger, what proofs are checked against: a C2SP
    signed note (tlog-checkpoint), signed by the runner key or --sign-key."""
    if as_note or not as_json:
        _note_checkpoint(ctx, size, sign_key, as_json, output, log_name)
        return
    if log_name is not None:
        raise UsageError("--log-name goes with the C2SP checkpoint, not --json")
    _json_checkpoint(ctx, size, sign_key, output)


def _json_checkpoint(
    ctx: click.Context, size: int | None, sign_key: Path | None, output: Path | None
) -> None:
    """The older promote-checkpoint/v1 document: on stdout, and in `output`."""
    from promote.ledger.proofs import ledger_checkpoint, load_private_key

    key = load_private_key(sign_key) if sign_key else None  # a bad key fails before the work
    with opened(ctx) as (_, backend):
        cp = ledger_checkpoint(backend, size)
    if key is not None:
        cp = cp.sign(key)
    if output is not None:
        write_output(output, pretty(cp.to_dict()))
    emit_json(cp.to_dict())


def _note_checkpoint(
    ctx: click.Context,
    size: int | None,
    sign_key: Path | None,
    as_json: bool,
    output: Path | None,
    log_name: str | None,
) -> None:
    from promote.attest.keys import load_private_key
    from promote.attest.runner import load_runner_key
    from promote.receipt import DEFAULT_LOG_NAME, checkpoint_note, read_note_checkpoint

    with opened(ctx) as (ws, backend):
        key = load_private_key(sign_key) if sign_key else load_runner_key(ws.root)
        note = checkpoint_note(backend, key, log_name or DEFAULT_LOG_NAME, size)
    if output is not None:
        write_output(output, note)
    if as_json:
        cp, _ = read_note_checkpoint(note, None)
        emit_json(
            {"origin": cp.origin, "size": cp.size, "root": cp.root.hex(), "note": note.decode()}
        )
    elif output is None:
        click.echo(note.decode(), nl=False)
    else:
        click.echo(f"wrote {output}")


def _load_any_checkpoint(
    data: bytes, key_file: Path | None, log_key: str | None
) -> tuple[Any, bool]:
    """A checkpoint file: C2SP signed note, or `promote-checkpoint/v1` JSON (first byte
    `{`, read for one release). Returns (size-and-root, whether a signature was checked).
    """
    from promote.ledger.proofs import load_checkpoint, load_public_key

    if data.lstrip()[:1] == b"{":
        if log_key is not None:
            raise UsageError("--log-key goes with a C2SP checkpoint, not a JSON one")
        cp = load_checkpoint(data)
        if key_file is not None:
            cp.check_signature(load_public_key(key_file))
        return cp, key_file is not None
    from promote.ledger.checkpoint import ForeignLog
    from promote.ledger.note import Verifier, open_note, parse_note
    from promote.receipt import read_note_checkpoint

    body, tree = read_note_checkpoint(data, None)
    if key_file is not None:
        from promote.receipt import note_verifier

        open_note(parse_note(data), [note_verifier(load_public_key(key_file), body.origin)])
    if log_key is not None:
        v = Verifier.parse(log_key)
        if v.name != body.origin:
            raise ForeignLog(f"the checkpoint is of the log {body.origin[:100]!r}, not {v.name!r}")
        open_note(parse_note(data), [v])
    return tree, key_file is not None or log_key is not None


@click.command(name="prove")
@click.argument("seq", type=click.IntRange(min=1), required=False)
@click.option(
    "--consistency",
    "old_size",
    type=click.IntRange(min=0),
    metavar="OLD_SIZE",
    help="Prove that the ledger at OLD_SIZE entries is a prefix of today's.",
)
@click.option("--size", type=click.IntRange(min=0), help="The tree size (default: the head).")
@path_option("-o", "--output", help="Write the proof here, not stdout.")
@path_option("--entry-out", help="Also write entry SEQ's bytes here, for verify-proof --entry.")
@click.pass_context
def prove_cmd(
    ctx: click.Context,
    seq: int | None,
    old_size: int | None,
    size: int | None,
    output: Path | None,
    entry_out: Path | None,
) -> None:
    """An inclusion proof of entry SEQ, or a consistency proof from OLD_SIZE (JSON)."""
    from promote.ledger.proofs import prove_consistency, prove_inclusion

    if (seq is None) == (old_size is None):
        raise UsageError("give either SEQ (inclusion) or --consistency OLD_SIZE, not both")
    if entry_out is not None and seq is None:
        raise UsageError("--entry-out goes with an inclusion proof (SEQ)")
    proof: Any
    with opened(ctx) as (_, backend):
        if seq is not None:
            proof, entry = prove_inclusion(backend, seq, size)
        else:
            assert old_size is not None
            proof, entry = prove_consistency(backend, old_size, size), None
    if entry_out is not None and entry is not None:
        write_output(entry_out, entry)
    data = pretty(proof.to_dict())
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        write_output(output, data)
        click.echo(f"wrote {output}")


@click.command(name="verify-proof")
@click.argument("proof_file", metavar="PROOF", type=click.Path(path_type=Path))
@path_option(
    "--checkpoint",
    "checkpoint_file",
    required=True,
    help="The checkpoint to check against (the newer one, for consistency).",
)
@path_option(
    "--entry", "entry_file", help="The ledger entry (its exact bytes): for an inclusion proof."
)
@path_option("--old-checkpoint", "old_file", help="The older checkpoint: for a consistency proof.")
@path_option("--verify-key", help="Require checkpoints signed by this Ed25519 public key (PEM).")
@click.option("--log-key", help="Require C2SP checkpoints signed by this log vkey.")
@json_option("Print the result as a JSON object.")
def verify_proof_cmd(
    proof_file: Path,
    checkpoint_file: Path,
    entry_file: Path | None,
    old_file: Path | None,
    verify_key: Path | None,
    log_key: str | None,
    as_json: bool,
) -> None:
    """Check a proof offline, from files only. Exit 3 when it does not hold."""
    from promote.errors import InvalidDocument
    from promote.ledger.proofs import (
        InclusionProof,
        load_proof,
        verify_consistency_proof,
        verify_inclusion_proof,
    )

    def parse(path: Path, what: str, loader: Any) -> Any:
        try:
            return loader(read_input(path, what))
        except InvalidDocument as e:
            raise InvalidDocument(f"{path}: {e}") from None

    proof = parse(proof_file, "proof", load_proof)
    new, signed = parse(
        checkpoint_file,
        "checkpoint",
        lambda data: _load_any_checkpoint(data, verify_key, log_key),
    )
    report: dict[str, Any]
    if isinstance(proof, InclusionProof):
        if entry_file is None:
            raise UsageError("an inclusion proof needs --entry FILE (the entry's bytes)")
        if old_file is not None:
            raise UsageError("--old-checkpoint goes with a consistency proof")
        verify_inclusion_proof(proof, read_input(entry_file, "entry"), new)
        report = {"kind": "inclusion", "seq": proof.seq, "entry": str(proof.entry)}
        text = f"ok: entry {proof.seq} ({proof.entry}) is in the ledger of {new.size} entries"
    else:
        if old_file is None:
            raise UsageError("a consistency proof needs --old-checkpoint FILE")
        if entry_file is not None:
            raise UsageError("--entry goes with an inclusion proof")
        old, old_signed = parse(
            old_file,
            "old checkpoint",
            lambda data: _load_any_checkpoint(data, verify_key, log_key),
        )
        signed = signed and old_signed
        verify_consistency_proof(proof, old, new)
        report = {"kind": "consistency", "old_size": old.size, "old_root": old.root.hex()}
        text = (
            f"ok: the ledger of {new.size} entries extends the ledger of {old.size}"
            " without rewriting it"
        )
    report.update(ok=True, size=new.size, root=new.root.hex(), signed=signed)
    if as_json:
        emit_json(report)
    else:
        click.echo(f"{text} (root {new.root.hex()}{', signature verified' if signed else ''})")


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = ()
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = (checkpoint_cmd, prove_cmd, verify_proof_cmd)
