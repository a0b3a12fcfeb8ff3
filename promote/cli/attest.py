"""The commands for keys and signed attestations (DSSE + in-toto Statement v1).

    promote key new [--kind ed25519|ecdsa-p256] -o PRIVATE.pem
    promote attest [sign] --key K --predicate-type T --subject FILE... PREDICATE.json
    promote attest verify DIGEST_OR_FILE [--trust FILE] [--role ROLE] [--json]

`promote attest ARGS` is short for `promote attest sign ARGS`. A capsule names the
attestations (`promote capsule new --attestation DIGEST`), and the gate verifies them
(control/promote/promote_protocol.md, "The required evidence").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from cas._cli import emit_json, json_option, path_option
from cas.errors import EXIT_INTEGRITY, UsageError
from promote.cli.common import read_input, workspace, write_output


@click.group(name="key")
def key_group() -> None:
    """Signing keys for attestations (Ed25519 or ECDSA P-256, PEM)."""


@key_group.command(name="new")
@click.option(
    "--kind",
    type=click.Choice(["ed25519", "ecdsa-p256"]),
    default="ed25519",
    show_default=True,
    help="The key algorithm.",
)
@path_option("-o", "--output", required=True, help="The private key file to create (mode 0600).")
def key_new_cmd(kind: str, output: Path) -> None:
    """Create a key pair: OUTPUT (PKCS#8 PEM, mode 0600) and OUTPUT with the suffix
    .pub (SubjectPublicKeyInfo PEM). Neither may exist. Prints the key id: the hex
    SHA-256 of the DER public key, what trust.json and signatures name it by."""
    from promote.attest.keys import key_id, new_key, write_key_pair

    key = new_key(kind)
    pub = write_key_pair(output, key)
    click.echo(f"{key_id(key.public_key())}  {kind}  {output}  {pub}")


class _DefaultSign(click.Group):
    """A group whose unknown first word starts `sign`: `attest X` = `attest sign X`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["sign", *args]
        return super().parse_args(ctx, args)


@click.group(name="attest", cls=_DefaultSign)
def attest_group() -> None:
    """Signed attestations: `promote attest ...` signs (same as `attest sign`),
    `promote attest verify` checks. A capsule names them as its evidence."""


def _hash_file(path: Path) -> dict[str, str]:
    from cas.digest import hasher

    b3 = hasher()
    sha = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                b3.update(chunk)
                sha.update(chunk)
    except OSError as e:
        raise UsageError(f"subject {path}: {e.strerror}") from None
    return {"blake3": b3.hexdigest(), "sha256": sha.hexdigest()}


@attest_group.command(name="sign")
@path_option("--key", "key_file", required=True, help="The private key to sign with (PEM).")
@click.option(
    "--predicate-type",
    required=True,
    metavar="URI",
    help="The predicate type, e.g. https://cas-promote.invalid/check-report/v1.",
)
@path_option(
    "--subject",
    "subjects",
    multiple=True,
    help="A file the statement is about, named as given, by BLAKE3 and SHA-256 (repeatable).",
)
@path_option("-o", "--output", help="Also write the envelope here.")
@click.argument("predicate", type=click.Path(path_type=Path))
@click.pass_context
def attest_sign_cmd(
    ctx: click.Context,
    key_file: Path,
    predicate_type: str,
    subjects: tuple[Path, ...],
    output: Path | None,
    predicate: Path,
) -> None:
    """Sign an in-toto Statement of PREDICATE (a JSON object, `-` for stdin) about
    the --subject files, as a DSSE envelope; put it into the store and print its
    digest."""
    from promote.attest.dsse import sign_envelope
    from promote.attest.keys import load_private_key
    from promote.attest.statement import PAYLOAD_TYPE, Statement, Subject
    from promote.canonical import load_json

    if not subjects:
        raise UsageError("a statement needs at least one --subject FILE")
    key = load_private_key(key_file)  # a bad key fails before any work
    doc = load_json(read_input(predicate, "predicate"), f"predicate {predicate}")
    if not isinstance(doc, dict):
        raise UsageError(f"predicate {predicate}: want a JSON object")
    subs = [Subject(str(p), tuple(_hash_file(p).items())) for p in subjects]
    statement = Statement.build(subs, predicate_type, doc)
    ws = workspace(ctx)
    envelope = sign_envelope(PAYLOAD_TYPE, statement.encode(), [key])
    data = envelope.encode()
    ref = ws.store.put_bytes(data)
    if output is not None:
        write_output(output, data)
    click.echo(f"{ref.digest}  {ref.size}")


def _read_envelope(ctx: click.Context, source: str) -> tuple[bytes, Any]:
    """The envelope's bytes, from the store when `source` is a digest, else a file;
    and the workspace when one was needed (else None)."""
    from cas.digest import Digest
    from promote.attest.dsse import MAX_ENVELOPE

    if source.startswith("blake3:"):
        digest = Digest.parse(source)
        ws = workspace(ctx)
        return ws.store.read_bytes(digest, limit=MAX_ENVELOPE), ws
    return read_input(Path(source), "envelope"), None


@attest_group.command(name="verify")
@click.argument("source", metavar="DIGEST_OR_FILE")
@path_option(
    "--trust",
    "trust_file",
    help="The trust roots (default: control/promote/trust.json of the workspace).",
)
@click.option(
    "--role",
    type=click.Choice(["builder", "checker", "runner", "admin"]),
    help="Require the role's threshold of distinct signers (default: any one trusted signer).",
)
@json_option("Print the signers, predicate type, subjects and predicate as JSON.")
@click.pass_context
def attest_verify_cmd(
    ctx: click.Context, source: str, trust_file: Path | None, role: str | None, as_json: bool
) -> None:
    """Verify an attestation (a store digest or an envelope file) against the trust
    roots; print who signed it, its predicate type and subjects. Exit 3 when it lacks
    the trusted signatures, 2 when it is malformed."""
    from promote.attest.dsse import load_envelope
    from promote.attest.errors import Untrusted
    from promote.attest.trust import TRUST_PATH, load_trust, verify_statement

    data, ws = _read_envelope(ctx, source)
    if trust_file is None:
        trust_file = (ws.root if ws is not None else workspace(ctx).root) / TRUST_PATH
        if not trust_file.exists():
            raise UsageError(f"no trust roots: {TRUST_PATH} is missing (or pass --trust FILE)")
    trust = load_trust(read_input(trust_file, "trust roots"), f"trust roots {trust_file}")
    envelope = load_envelope(data)
    try:
        verified = verify_statement(envelope, trust, role)
    except Untrusted:
        if as_json:
            from promote.attest.trust import get_verification_result

            emit_json({"ok": False, **get_verification_result(envelope, trust, role).to_dict()})
            ctx.exit(EXIT_INTEGRITY)
        raise
    st, result = verified.statement, verified.result
    if as_json:
        emit_json(
            {
                "ok": True,
                **result.to_dict(),
                "predicate_type": st.predicate_type,
                "subjects": [s.to_dict() for s in st.subjects],
                "predicate": st.predicate,
            }
        )
        return
    click.echo(result.reason())
    click.echo(f"predicate type {st.predicate_type}")
    for s in st.subjects:
        digests = " ".join(f"{alg}:{hexd}" for alg, hexd in s.digest)
        click.echo(f"subject {s.name} {digests}")
    for p in result.problems:
        click.echo(f"  note: {p}")


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (key_group, attest_group)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
