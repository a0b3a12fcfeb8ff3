"""Receipts and witnesses (issue 16, ADR 12):

    promote receipt SEQ|PATH -o receipt.json [--log-name NAME]
    promote verify-receipt RECEIPT (--key runner.pub | --trust trust.json)
                           [--artifact FILE] [--origin ORIGIN]
                           [--witnesses N --witness-key W.vkey ...] [--json]
    promote ledger witness CHECKPOINT --key W.pem --name W --state DIR
                           --log-key LOG.vkey [--proof FILE] [--old-size N] [-o FILE]
    promote key vkey KEY.pub --name NAME [--cosigner]

`verify-receipt` and `ledger witness` need no workspace: they read only the files
they are given (a second machine runs as a witness with its key, its state directory,
the log's vkey, and the checkpoint and proof it is sent). Exit codes: 0 holds, 2
malformed, 3 a link that does not hold (one line naming it), 5 (witness) the caller's
old size is not the witness's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cas._cli import emit_json, json_option, path_option
from cas.errors import UsageError
from promote.canonical import pretty
from promote.cli.common import opened, read_input, write_output

_LOG_NAME_HELP = "The log's name; its origin is NAME/blake3 (default: cas-promote.invalid/ledger)."


def _entry_for(backend: Any, store: Any, which: str) -> int:
    """SEQ, or the last entry that pointed PATH at an object."""
    from promote.ledger.entry import parse_entry

    if which.isdigit():
        return int(which)
    head = backend.head()
    for seq in range(head.seq, 0, -1):
        entry = parse_entry(backend.read(seq))
        if any(c.path == which and c.after is not None for c in entry.changes):
            return seq
    raise UsageError(f"no ledger entry points {which} at an object")


@click.command(name="receipt")
@click.argument("which", metavar="SEQ|PATH")
@path_option("-o", "--output", required=True, help="Write the receipt (JSON) here.")
@click.option("--log-name", default=None, help=_LOG_NAME_HELP)
@click.pass_context
def receipt_cmd(ctx: click.Context, which: str, output: Path, log_name: str | None) -> None:
    """A receipt of a promotion, verifiable offline with the runner's public key.

    One JSON document: the VSA envelope, the ledger entry, its inclusion proof, a C2SP
    checkpoint signed by the runner key, and the key's ids. SEQ is an entry; PATH names
    the last entry that pointed PATH at an object.
    """
    from promote.attest.runner import load_runner_key
    from promote.receipt import DEFAULT_LOG_NAME, build_receipt

    with opened(ctx) as (ws, backend):
        key = load_runner_key(ws.root)
        seq = _entry_for(backend, ws.store, which)
        doc = build_receipt(backend, ws.store, seq, key, log_name or DEFAULT_LOG_NAME)
    write_output(output, pretty(doc))
    click.echo(
        f"wrote {output}: entry {seq}, checkpoint of {doc['inclusion']['tree_size']} entries"
    )


@click.command(name="verify-receipt")
@click.argument("receipt_file", metavar="RECEIPT", type=click.Path(path_type=Path))
@path_option("--key", "key_file", help="The runner's public key (PEM).")
@path_option(
    "--trust",
    "trust_file",
    help="Or the trust roots (trust.json) as you hold them now: the signer must be a runner.",
)
@path_option("--artifact", help="Also require this file's blake3 and sha256 to be a subject.")
@click.option("--origin", help="Require the checkpoint to be of this log (NAME/blake3).")
@click.option("--witnesses", type=click.IntRange(min=0), default=0, help="Cosignatures required.")
@click.option("--witness-key", "witness_keys", multiple=True, help="A witness's vkey (repeatable).")
@json_option("Print the result as a JSON object.")
def verify_receipt_cmd(
    receipt_file: Path,
    key_file: Path | None,
    trust_file: Path | None,
    artifact: Path | None,
    origin: str | None,
    witnesses: int,
    witness_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify a receipt offline: no workspace, store or network. Exit 0 when it holds,
    3 when a link does not (named), 2 when it is malformed."""
    from promote.attest.keys import load_public_key
    from promote.attest.trust import load_trust
    from promote.receipt import verify_receipt

    if (key_file is None) == (trust_file is None):
        raise UsageError("give --key runner.pub or --trust trust.json (one of them)")
    key = load_public_key(key_file) if key_file is not None else None
    trust = None
    if trust_file is not None:
        trust = load_trust(read_input(trust_file, "trust roots"), str(trust_file))
    wits = [_witness_vkey(k) for k in witness_keys]
    if witnesses > len(wits):
        raise UsageError(f"--witnesses {witnesses}: only {len(wits)} --witness-key given")
    v = verify_receipt(
        read_input(receipt_file, "receipt"),
        key,
        trust=trust,
        artifact=artifact,
        origin=origin,
        witnesses=[w if w.sig_type == 0x04 else w.cosignature() for w in wits],
        require=witnesses,
    )
    if as_json:
        emit_json(
            {
                "ok": True,
                "seq": v.seq,
                "entry": str(v.entry),
                "origin": v.origin,
                "size": v.size,
                "subjects": list(v.subjects),
                "cosigners": list(v.cosigners),
                "artifact": v.artifact,
            }
        )
        return
    what = f" ({v.artifact} is a subject)" if v.artifact else ""
    wit = f", cosigned by {', '.join(v.cosigners)}" if v.cosigners else ""
    click.echo(
        f"ok: entry {v.seq} ({v.entry}) promoted {', '.join(v.subjects)}{what};"
        f" in {v.origin} at size {v.size}{wit}"
    )


def _witness_vkey(text: str) -> Any:
    """A vkey given inline or as a file holding one."""
    from promote.ledger.note import Verifier

    path = Path(text)
    if "+" not in text or path.exists():
        text = read_input(path, "witness key").decode("utf-8", "replace").strip()
    return Verifier.parse(text)


@click.command(name="witness")
@click.argument("checkpoint_file", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@path_option("--key", "key_file", required=True, help="The witness's Ed25519 private key (PEM).")
@click.option("--name", required=True, help="The witness's key name (witness.example.com/w1).")
@path_option("--state", "state_dir", required=True, help="The witness's state directory.")
@click.option("--log-key", "log_keys", multiple=True, required=True, help="The log's vkey.")
@path_option("--proof", "proof_file", help="A consistency proof from the last size cosigned.")
@click.option(
    "--old-size", type=click.IntRange(min=0), help="The size the caller last saw cosigned."
)
@path_option("-o", "--output", help="Write the checkpoint with the cosignature appended.")
@click.pass_context
def witness_cmd(
    ctx: click.Context,
    checkpoint_file: Path,
    key_file: Path,
    name: str,
    state_dir: Path,
    log_keys: tuple[str, ...],
    proof_file: Path | None,
    old_size: int | None,
    output: Path | None,
) -> None:
    """Cosign a checkpoint (tlog-cosignature/v1), only if it extends the last one this
    key cosigned for its log; print the cosignature line.

    Without --proof, in a workspace, the consistency proof is built from its ledger.
    """
    from promote.attest.keys import load_private_key
    from promote.ledger.checkpoint import TlogCheckpoint
    from promote.ledger.note import parse_note
    from promote.ledger.proofs import load_proof, prove_consistency
    from promote.ledger.witness import LogConfig, Witness, add_cosignatures
    from promote.receipt import note_signer

    data = read_input(checkpoint_file, "checkpoint")
    logs = [LogConfig.from_vkey(_witness_vkey(k).vkey()) for k in log_keys]
    witness = Witness(note_signer(load_private_key(key_file), name), state_dir, logs)
    cp = TlogCheckpoint.parse(parse_note(data).text, None)
    path: tuple[bytes, ...] = ()
    if proof_file is not None:
        proof = load_proof(read_input(proof_file, "proof"))
        path = tuple(getattr(proof, "path", ()))
    else:
        last = witness.last(cp.origin) if cp.origin in witness.logs else None
        if last is not None and 0 < last.size < cp.size:
            with opened(ctx) as (_, backend):
                path = prove_consistency(backend, last.size, cp.size).path
    sig = witness.cosign(data, path, old_size)
    if output is not None:
        write_output(output, add_cosignatures(data, sig))
    click.echo(sig.line(), nl=False)


@click.command(name="vkey")
@click.argument("key_file", metavar="KEY", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The key's name (a log's origin, or a witness's name).")
@click.option("--cosigner", is_flag=True, help="A witness's cosignature key (type 0x04).")
def vkey_cmd(key_file: Path, name: str, cosigner: bool) -> None:
    """Print the C2SP vkey of an Ed25519 public (or private) key, for verifiers."""
    from promote.attest.keys import load_private_key, load_public_key
    from promote.receipt import note_verifier

    data = read_input(key_file, "key")
    pub = (
        load_private_key(key_file).public_key()
        if b"PRIVATE KEY" in data
        else load_public_key(key_file)
    )
    v = note_verifier(pub, name)
    click.echo((v.cosignature() if cosigner else v).vkey())


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (receipt_cmd, verify_receipt_cmd)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = (witness_cmd,)
#: Registered on `promote key`.
KEY_COMMANDS: tuple[click.Command, ...] = (vkey_cmd,)
