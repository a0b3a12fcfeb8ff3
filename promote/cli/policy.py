"""The commands that test the policy and ask it about an input.

promote policy test [--engine E] [--coverage] [--json]
promote policy eval --input FILE [--engine E] [--json]
"""

from __future__ import annotations

from pathlib import Path

import click

from cas._cli import emit_json, json_option, path_option
from cas.errors import EXIT_DENIED, EXIT_INTERNAL
from promote.cli.common import (
    engine_option,
    read_input,
    workspace,
)


@click.group(name="policy")
def policy_group() -> None:
    """Test the policy, and ask it about an input document."""


@policy_group.command(name="test")
@engine_option
@click.option(
    "--coverage",
    is_flag=True,
    help="Also list the policy lines no test reached (regorus only).",
)
@json_option("Print the results as JSON.")
@click.pass_context
def policy_test_cmd(ctx: click.Context, engine: str | None, coverage: bool, as_json: bool) -> None:
    """Run every test_* rule under the policy directory, as `opa test` does.

    Exit 0 when every test passes, 1 when any fails or errors, when there is no
    test, or when the policy does not compile.
    """
    from promote.errors import PolicyError
    from promote.policy.engines import load_bundle
    from promote.policy.testing import PolicyTestError, run_policy_tests, tester_from_config

    ws = workspace(ctx)
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
@path_option(
    "--input",
    "input_file",
    required=True,
    help="The input document: a JSON file, '-' for stdin, or the digest of one in the store"
    " (a run's report names its decision's input).",
)
@engine_option
@json_option("Print the decision document.")
@click.pass_context
def policy_eval_cmd(
    ctx: click.Context, input_file: Path, engine: str | None, as_json: bool
) -> None:
    """Show the policy's decision, and its reasons, for an input document.

    The input must be a policy input as the gate builds it (promote-policy-input/v2,
    control/promote/policy_input.schema.json): exit 2, with the schema's first
    errors, if not. Exit 0 for allow, 4 for deny.
    """
    from promote.canonical import load_json
    from promote.model import check_policy_input
    from promote.policy.engines import check_input, decide, engine_from_config, load_bundle

    ws = workspace(ctx)
    policy_engine = engine_from_config(ws.engine_config, engine)  # the config first
    if str(input_file).startswith("blake3:") and not input_file.exists():
        from cas.digest import Digest
        from promote.canonical import MAX_DOCUMENT

        data = ws.store.read_bytes(Digest.parse(str(input_file)), limit=MAX_DOCUMENT)
    else:
        data = read_input(input_file, "input")
    doc = load_json(data, f"input {input_file}")
    check_input(doc, f"input {input_file}")
    check_policy_input(doc, f"input {input_file}")
    bundle = load_bundle(ws.policy_dir, ws.policy_package)
    decision = decide(policy_engine, bundle, doc)
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


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (policy_group,)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
