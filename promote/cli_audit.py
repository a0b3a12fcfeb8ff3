"""The audit commands: ledger checkpoints and proofs, policy tests and evaluation.

    promote ledger checkpoint [--size N] [--sign-key FILE] [--json] [-o FILE]
    promote ledger prove SEQ [--size N] [-o FILE] [--entry-out FILE]
    promote ledger prove --consistency OLD_SIZE [--size N] [-o FILE]
    promote ledger verify-proof PROOF --checkpoint FILE [--entry FILE]
                                [--old-checkpoint FILE] [--verify-key FILE] [--json]
    promote policy test [--engine E] [--coverage] [--json]
    promote policy eval --input FILE [--engine E] [--json]

`verify-proof` needs no workspace: it reads only the files it is given.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cas._cli import emit_json
from cas.errors import EXIT_DENIED, EXIT_INTERNAL, UsageError
from promote.canonical import pretty

__all__ = ["register"]

_ENGINES = click.Choice(["regorus", "opa", "opa-rest"])


def _read(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None


def _write(path: Path, data: bytes) -> None:
    from cas.fsutil import atomic_write

    try:
        atomic_write(path, data)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


@contextlib.contextmanager
def _opened_ledger(ctx: click.Context) -> Iterator[Any]:
    """The workspace's commit backend, closed afterwards if it holds a connection."""
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    backend = open_ledger(Workspace.find(ctx.obj["root"]))
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


# -- promote ledger ... ---------------------------------------------------------------


@click.command(name="checkpoint")
@click.option("--size", type=click.IntRange(min=0), help="Entries to cover (default: all).")
@click.option(
    "--sign-key",
    type=click.Path(path_type=Path),
    help="Sign with this Ed25519 private key (PEM, PKCS#8).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint document.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Also write the document here."
)
@click.pass_context
def checkpoint_cmd(
    ctx: click.Context, size: int | None, sign_key: Path | None, as_json: bool, output: Path | None
) -> None:
    """The size and Merkle root of the ledger: what a proof is checked against."""
    from promote.proofs import key_id, ledger_checkpoint, load_private_key

    key = load_private_key(sign_key) if sign_key else None  # a bad key fails before the work
    with _opened_ledger(ctx) as backend:
        cp = ledger_checkpoint(backend, size)
    if key is not None:
        cp = cp.sign(key)
    if output is not None:
        _write(output, pretty(cp.to_dict()))
    if as_json:
        emit_json(cp.to_dict())
        return
    click.echo(f"size {cp.size}")
    click.echo(f"root {cp.root.hex()}")
    if key is not None:
        click.echo(f"signed by {key_id(key.public_key())}")
    if output is not None:
        click.echo(f"wrote {output}")


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
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write the proof here, not stdout."
)
@click.option(
    "--entry-out",
    type=click.Path(path_type=Path),
    help="Also write entry SEQ's bytes here, for verify-proof --entry.",
)
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
    from promote.proofs import prove_consistency, prove_inclusion

    if (seq is None) == (old_size is None):
        raise UsageError("give either SEQ (inclusion) or --consistency OLD_SIZE, not both")
    if entry_out is not None and seq is None:
        raise UsageError("--entry-out goes with an inclusion proof (SEQ)")
    proof: Any
    with _opened_ledger(ctx) as backend:
        if seq is not None:
            proof, entry = prove_inclusion(backend, seq, size)
        else:
            assert old_size is not None
            proof, entry = prove_consistency(backend, old_size, size), None
    if entry_out is not None and entry is not None:
        _write(entry_out, entry)
    data = pretty(proof.to_dict())
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        _write(output, data)
        click.echo(f"wrote {output}")


@click.command(name="verify-proof")
@click.argument("proof_file", metavar="PROOF", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoint_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The checkpoint to check against (the newer one, for consistency).",
)
@click.option(
    "--entry",
    "entry_file",
    type=click.Path(path_type=Path),
    help="The ledger entry (its exact bytes): for an inclusion proof.",
)
@click.option(
    "--old-checkpoint",
    "old_file",
    type=click.Path(path_type=Path),
    help="The older checkpoint: for a consistency proof.",
)
@click.option(
    "--verify-key",
    type=click.Path(path_type=Path),
    help="Require checkpoints signed by this Ed25519 public key (PEM).",
)
@click.option("--json", "as_json", is_flag=True)
def verify_proof_cmd(
    proof_file: Path,
    checkpoint_file: Path,
    entry_file: Path | None,
    old_file: Path | None,
    verify_key: Path | None,
    as_json: bool,
) -> None:
    """Check a proof offline, from files only. Exit 3 when it does not hold."""
    from promote.errors import InvalidDocument
    from promote.proofs import (
        InclusionProof,
        load_checkpoint,
        load_proof,
        load_public_key,
        verify_consistency_proof,
        verify_inclusion_proof,
    )

    def parse(path: Path, what: str, loader: Any) -> Any:
        try:
            return loader(_read(path, what))
        except InvalidDocument as e:
            raise InvalidDocument(f"{path}: {e}") from None

    proof = parse(proof_file, "proof", load_proof)
    new = parse(checkpoint_file, "checkpoint", load_checkpoint)
    key = load_public_key(verify_key) if verify_key else None
    report: dict[str, Any]
    if isinstance(proof, InclusionProof):
        if entry_file is None:
            raise UsageError("an inclusion proof needs --entry FILE (the entry's bytes)")
        if old_file is not None:
            raise UsageError("--old-checkpoint goes with a consistency proof")
        verify_inclusion_proof(proof, _read(entry_file, "entry"), new, key)
        report = {"kind": "inclusion", "seq": proof.seq, "entry": str(proof.entry)}
        text = f"ok: entry {proof.seq} ({proof.entry}) is in the ledger of {new.size} entries"
    else:
        if old_file is None:
            raise UsageError("a consistency proof needs --old-checkpoint FILE")
        if entry_file is not None:
            raise UsageError("--entry goes with an inclusion proof")
        old = parse(old_file, "old checkpoint", load_checkpoint)
        verify_consistency_proof(proof, old, new, key)
        report = {"kind": "consistency", "old_size": old.size, "old_root": old.root.hex()}
        text = (
            f"ok: the ledger of {new.size} entries extends the ledger of {old.size}"
            " without rewriting it"
        )
    report.update(ok=True, size=new.size, root=new.root.hex(), signed=key is not None)
    if as_json:
        emit_json(report)
    else:
        click.echo(f"{text} (root {new.root.hex()}{', signature verified' if key else ''})")


# -- promote policy ... ---------------------------------------------------------------


@click.group(name="policy")
def policy_group() -> None:
    """Test the policy, and ask it about an input document."""


@policy_group.command(name="test")
@click.option("--engine", type=_ENGINES, help="Override the configured policy engine.")
@click.option(
    "--coverage",
    is_flag=True,
    help="Also list the policy lines no test reached (regorus only).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_test_cmd(ctx: click.Context, engine: str | None, coverage: bool, as_json: bool) -> None:
    """Run every test_* rule under the policy directory, as `opa test` does.

    Exit 0 when every test passes, 1 when any fails or errors, when there is no
    test, or when the policy does not compile.
    """
    from promote.errors import PolicyError
    from promote.policy import load_bundle
    from promote.policy_tests import PolicyTestError, run_policy_tests, tester_from_config
    from promote.workspace import Workspace

    ws = Workspace.find(ctx.obj["root"])
    tester = tester_from_config(ws.engine_config, engine)
    try:
        bundle = load_bundle(ws.policy_dir, ws.policy_package, tests=True)
    except PolicyError as e:  # a deny (4) for the gate; here, nothing to test
        raise PolicyTestError(str(e)) from None
    run = run_policy_tests(tester, bundle, coverage)
    if as_json:
        emit_json(run.to_dict())
    else:
        for r in run.results:
            line = f"{r.status.upper():5} {r.ref}"
            if r.status in ("fail", "error"):
                line += f"  ({r.location})" + (f": {r.detail}" if r.detail else "")
            click.echo(line)
        if run.coverage is not None:
            for path, lines in sorted(run.coverage.items()):
                shown = ", ".join(map(str, lines)) if lines else "none"
                click.echo(f"not covered: {path}: lines {shown}")
        summary = ", ".join(f"{run.count(s)} {w}" for s, w in _WORDS)
        if not run.results:
            summary = "no tests found"
        click.echo(f"policy tests ({run.engine} {run.engine_version}): {summary}", err=not run.ok)
    if not run.ok:
        ctx.exit(EXIT_INTERNAL)


_WORDS = (("pass", "passed"), ("fail", "failed"), ("error", "errors"), ("skip", "skipped"))


@policy_group.command(name="eval")
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The input document: a JSON file, '-' for stdin, or the digest of one in the store"
    " (a run's report names its decision's input).",
)
@click.option("--engine", type=_ENGINES, help="Override the configured policy engine.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision document.")
@click.pass_context
def policy_eval_cmd(
    ctx: click.Context, input_file: Path, engine: str | None, as_json: bool
) -> None:
    """Show the policy's decision, and its reasons, for an input document.

    Exit 0 for allow, 4 for deny.
    """
    from promote.canonical import load_json
    from promote.policy import decide, engine_from_config, load_bundle
    from promote.workspace import Workspace

    ws = Workspace.find(ctx.obj["root"])
    if str(input_file).startswith("blake3:") and not input_file.exists():
        from cas.digest import Digest
        from promote.canonical import MAX_DOCUMENT

        data = ws.store.read_bytes(Digest.parse(str(input_file)), limit=MAX_DOCUMENT)
    else:
        data = _read(input_file, "input")
    doc = load_json(data, f"input {input_file}")
    bundle = load_bundle(ws.policy_dir, ws.policy_package)
    decision = decide(engine_from_config(ws.engine_config, engine), bundle, doc)
    if as_json:
        emit_json(decision.to_dict())
    else:
        click.echo(
            f"{'allow' if decision.allow else 'deny'}"
            f" ({decision.engine} {decision.engine_version}, policy {decision.policy.digest})"
        )
        for reason in decision.deny:
            click.echo(f"  - {reason}")
    if not decision.allow:
        ctx.exit(EXIT_DENIED)


def register(main: click.Group) -> None:
    """Add the audit commands to `promote` (under `ledger`, and a `policy` group)."""
    ledger = main.commands["ledger"]
    assert isinstance(ledger, click.Group)
    for cmd in (checkpoint_cmd, prove_cmd, verify_proof_cmd):
        ledger.add_command(cmd)
    existing = main.commands.get("policy")
    if isinstance(existing, click.Group):
        for cmd in policy_group.commands.values():
            existing.add_command(cmd)
    else:
        main.add_command(policy_group)
