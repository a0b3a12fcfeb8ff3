"""`promote control`: promote a change of the policy or the trust roots (ADR 10).

promote control [--key K]... [--dry-run] [--json] [--engine E]

The ledger pins the policy bundle and the trust roots in force; the gate refuses to
decide with others. After editing `control/policy/` or `control/promote/trust.json`,
this command signs a control-change attestation (predicate type
`https://cas-promote.invalid/control-change/v1`, predicate `{"policy", "trust"}`: the
digests of the new bundle and trust roots) with each --key, and runs a capsule of kind
`control` through the gate, which runs the new policy's tests, checks the signatures
against the admin threshold of the pinned trust roots (and of the new ones, for a
trust change) and asks the pinned policy. The entry changes no pointer and pins the
new digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cas._cli import emit_json, json_option, path_option
from cas.errors import UsageError
from promote.cli.common import dry_run_option, engine_option, opened, print_outcome

if TYPE_CHECKING:
    from promote.attest.statement import Subject

CONTROL_BUILDER = "promote control"


def _subject(name: str, data: bytes) -> Subject:
    from cas.digest import hash_bytes
    from promote.attest.statement import Subject

    return Subject(
        name,
        (
            ("blake3", hash_bytes(data).digest.hex),
            ("sha256", hashlib.sha256(data).hexdigest()),
        ),
    )


@click.command(name="control")
@path_option(
    "--key",
    "keys",
    multiple=True,
    help="An admin's private key to sign with (repeatable; default: the demo admin key"
    " .promote/keys/admin.pem).",
)
@dry_run_option("sign and plan; commit nothing.")
@json_option("Print the report object.")
@engine_option
@click.pass_context
def control_cmd(
    ctx: click.Context, keys: tuple[Path, ...], dry_run: bool, as_json: bool, engine: str | None
) -> None:
    """Promote the workspace's policy and trust roots, as the new pins.

    Exit 0 promoted, 2 nothing changed or a bad key, 3 the signatures do not meet
    the admin threshold, 4 the new policy's tests fail or the pinned policy denies.
    """
    from cas.digest import hash_bytes
    from promote.attest.dsse import sign_envelope
    from promote.attest.keys import load_private_key
    from promote.attest.statement import CONTROL_PREDICATE, PAYLOAD_TYPE, Statement
    from promote.canonical import pretty
    from promote.demo_keys import key_path
    from promote.gate import promote
    from promote.model import Capsule
    from promote.pins import head_pins, workspace_trust
    from promote.policy.engines import load_bundle

    with opened(ctx) as (ws, ledger):
        signing = [load_private_key(k) for k in (keys or (key_path(ws.root, "admin"),))]
        bundle = load_bundle(ws.policy_dir, ws.policy_package)
        trust = workspace_trust(ws)
        bundle_bytes, trust_bytes = bundle.encode(), trust.encode()
        head = ledger.head()
        pins = head_pins(ledger, head)
        new_policy, new_trust = hash_bytes(bundle_bytes), hash_bytes(trust_bytes)
        if pins.policy == new_policy and pins.trust in (None, new_trust):
            raise UsageError(
                f"nothing to promote: the policy {new_policy.digest} and trust roots"
                f" {new_trust.digest} are those ledger entry {head.seq} pins"
            )
        ws.store.put_bytes(bundle_bytes)
        ws.store.put_bytes(trust_bytes)
        subjects = [_subject("policy", bundle_bytes), _subject("trust", trust_bytes)]
        predicate = {"policy": str(new_policy.digest), "trust": str(new_trust.digest)}
        statement = Statement.build(subjects, CONTROL_PREDICATE, predicate)
        envelope = sign_envelope(PAYLOAD_TYPE, statement.encode(), signing)
        att = ws.store.put_bytes(envelope.encode())
        capsule = Capsule(
            (), (att.digest,), head.base, {"builder": CONTROL_BUILDER}, kind="control"
        )
        outcome = promote(
            ws, ledger, "control", engine, dry_run, capsule_bytes=pretty(capsule.to_dict())
        )
    if as_json:
        emit_json({**outcome.to_dict(), "control": {**predicate, "attestation": str(att.digest)}})
    else:
        click.echo(f"control change: policy {new_policy.digest}, trust {new_trust.digest}")
        click.echo(f"attestation {att.digest}, signed by {len(signing)} key(s)")
        print_outcome(outcome)
    ctx.exit(outcome.exit_code)


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (control_cmd,)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
