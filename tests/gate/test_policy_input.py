"""The policy input the gate builds matches its published schema
(control/promote/policy_input.schema.json), and the schema refuses anything else.

The gate runs in this process, on real workspaces, with `gate.policy_input` wrapped so
that every input it builds is kept: a dry run and a real run of a release (two targets,
signed CHECK), a delete, a denied release, a v1 capsule, and a control change. Every one
must match the schema. (tests/gate/conftest.py also checks every input that any test of
tests/gate stored.) `promote policy eval` refuses an input that does not match:
tests/audit/test_policy_cli.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
from helpers import Flow

from promote import gate
from promote.errors import InvalidDocument
from promote.model import _validator, check_policy_input
from promote.verify import open_ledger
from promote.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "policy_input.schema.json"


@pytest.fixture
def built() -> Iterator[list[dict[str, Any]]]:
    """Every policy input `gate.policy_input` builds while the test runs."""
    inputs: list[dict[str, Any]] = []
    real = gate.policy_input

    def keep(**kw: Any) -> dict[str, Any]:
        doc = real(**kw)
        inputs.append(copy.deepcopy(doc))
        return doc

    with mock.patch.object(gate, "policy_input", keep):
        yield inputs


def run_gate(flow: Flow, capsule: Path, dry_run: bool = False) -> gate.Outcome:
    ws = Workspace.load(flow.root)
    return gate.promote(ws, open_ledger(ws), str(capsule), dry_run=dry_run)


def test_the_published_schema_is_the_one_the_code_loads() -> None:
    published = REPO / "control/promote" / SCHEMA
    assert (REPO / "promote/data" / SCHEMA).read_bytes() == published.read_bytes()
    jsonschema.Draft202012Validator.check_schema(json.loads(published.read_bytes()))


def test_every_input_the_gate_builds_matches_the_schema(
    tmp_path: Path, built: list[dict[str, Any]]
) -> None:
    flow = Flow.init(tmp_path / "ws")
    app, lib = flow.put(b"app"), flow.put(b"lib")
    check = flow.check([app, lib])
    two = flow.capsule({"release/app.whl": app[0], "release/lib.so": lib[0]}, check)

    assert run_gate(flow, two, dry_run=True).exit_code == 0  # dry run
    assert run_gate(flow, two).exit_code == 0  # a real one: seq 1, a head

    new = flow.put(b"app 2")
    cap = flow.capsule(
        {"release/app.whl": new[0]}, flow.check([new]), "--delete", "release/lib.so", name="d"
    )
    assert run_gate(flow, cap).exit_code == 0  # a change and a delete

    other = flow.put(b"unchecked")
    denied = flow.capsule({"release/x": other[0]}, flow.check([new]), name="denied")
    assert run_gate(flow, denied).exit_code == 4  # not covered: denied by the policy

    v1 = flow.put(b"v1")
    cap_v1 = flow.capsule_v1({"release/v1": v1[0]}, flow.check_v1([v1]), name="v1")
    assert run_gate(flow, cap_v1).exit_code == 4  # unsigned: denied

    (flow.root / "control/policy/extra.rego").write_text(
        'package promote\nimport rego.v1\n\ndeny contains "no" if input.kind == "nothing"\n'
    )
    flow.control()  # a control change (the real CLI, in a child process)

    kinds = [(d["kind"], d["ledger"]["seq"], len(d["capsule"]["targets"])) for d in built]
    assert kinds == [
        ("release", 0, 2),
        ("release", 0, 2),
        ("release", 1, 2),
        ("release", 2, 1),
        ("release", 2, 1),
    ]
    assert built[4]["capsule"]["schema"] == "promote-capsule/v1"
    assert built[4]["attestations"][0]["signers"] == []
    for doc in built:
        check_policy_input(doc)
    # the control change's input, as the gate stored it (and the conftest checks it too)
    ws = Workspace.load(flow.root)
    report = json.loads((flow.root / "execution/promote/report.json").read_bytes())
    from cas.digest import Digest

    control = json.loads(ws.store.read_bytes(Digest.parse(report["decision"]["input"])))
    assert control["kind"] == "control" and control["control"] is not None
    check_policy_input(control)


GOOD: dict[str, Any] = json.loads((REPO / "tests/policy/vectors.json").read_text())["vectors"][0][
    "input"
]


def changed(path: str, value: Any) -> Any:
    """GOOD with the value at `path` (keys and indexes, "|"-separated) replaced, or
    removed (`KeyError`)."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split("|")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_a_vector_matches() -> None:
    check_policy_input(GOOD)


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("schema", "promote-policy-input/v1", "schema"),
        ("kind", "other", "kind"),
        ("kind", "control", "control"),  # a control input names its change
        ("control", {"policy": {"pinned": "x", "new": "y"}}, "control"),
        ("capsule_digest", KeyError, "(top)"),
        ("extra", 1, "(top)"),
        ("capsule|targets|0|size", -1, "capsule/targets/0/size"),
        ("capsule|unknown", 1, "capsule"),
        ("attestations", [], "attestations"),
        ("attestations|0|signers", "ci-checker", "attestations/0/signers"),
        ("attestations|0|roles", ["root"], "attestations/0/roles/0"),
        ("attestations|0|predicate", "pass", "attestations/0/predicate"),
        ("attestations|0|subjects|0|digest", {"md5": "00"}, "attestations/0/subjects/0/digest"),
        ("attestations|0|subjects|0|targets|0|path", 5, "attestations/0/subjects/0/targets/0/path"),
        ("current|release/app.whl", {"digest": "blake3:1"}, "current/release/app.whl"),
        ("allow_list", "release/", "allow_list"),
        ("ledger|seq", "0", "ledger/seq"),
        ("ledger|head", "HEAD", "ledger/head"),
    ],
)
def test_the_schema_refuses(path: str, value: Any, where: str) -> None:
    with pytest.raises(InvalidDocument) as e:
        check_policy_input(changed(path, value), "input in.json")
    message = str(e.value)
    assert message.startswith(
        "input in.json does not match promote-policy-input/v2 (policy_input.schema.json): "
    )
    assert "\n" not in message
    assert any(err.startswith(f"{where}: ") for err in message.split(": ", 1)[1].split("; ")), (
        message
    )


@pytest.mark.parametrize("doc", [None, [], "x", 1, {}])
def test_the_schema_refuses_what_is_not_an_input(doc: Any) -> None:
    assert list(_validator(SCHEMA).iter_errors(doc))
    with pytest.raises(InvalidDocument):
        check_policy_input(doc)
