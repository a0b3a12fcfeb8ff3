"""The trust roots' fast schema check (promote.attest.trust._trust_ok) against
jsonschema itself: on generated valid trust documents and on mutations of them, the
fast check accepts exactly what trust.schema.json accepts, except a threshold written
as a float (1.0 is an integer to JSON Schema), which it leaves to jsonschema. It never
accepts what the schema refuses, and a refusal is still worded by jsonschema."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promote.attest.errors import InvalidTrust
from promote.attest.trust import ROLES, _trust_ok, _validator, load_trust
from promote.demo_keys import write_demo_trust

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
KEYID = "ab" * 32

ids = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
keyids = st.binary(min_size=32, max_size=32).map(bytes.hex)
pems = st.text(max_size=40).map(lambda t: "-----BEGIN PUBLIC KEY-----" + t)
thresholds = st.sampled_from([1, 2, 256]) | st.integers(1, 256)


@st.composite
def trust_docs(draw: st.DrawFn) -> dict[str, Any]:
    signers = [
        {
            "id": draw(ids),
            "roles": draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=4, unique=True)),
            "keys": [
                {"keyid": draw(keyids), "public_key": draw(pems)}
                for _ in range(draw(st.integers(1, 3)))
            ],
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    roles = {r: {"threshold": draw(thresholds)} for r in ROLES}
    return {"schema": "promote-trust/v1", "signers": signers, "roles": roles}


#: What a mutation may put in place of a value: each is wrong somewhere, right elsewhere.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    256,
    257,
    -1,
    "",
    "x",
    "X",
    "a" * 64,
    "a" * 65,
    "ci\n",
    "-ci",
    "ci checker",
    KEYID,
    KEYID + "\n",
    KEYID.upper(),
    KEYID[:-1],
    PEM,
    " " + PEM,
    "-----BEGIN PUBLIC KEY-----" + "A" * 4071,
    "-----BEGIN PUBLIC KEY-----" + "A" * 4070,
    "promote-trust/v1",
    "promote-trust/v2",
    *ROLES,
    "owner",
    [],
    ["builder"],
    ["builder", "builder"],
    ["builder", "checker"],
    [["builder"]],
    [{}],
    {},
    {"threshold": 1},
    {"threshold": 0},
    {"keyid": KEYID, "public_key": PEM},
    {"id": "s", "roles": ["admin"], "keys": [{"keyid": KEYID, "public_key": PEM}]},
    [{"keyid": KEYID, "public_key": PEM}] * 17,
    1.0,  # an integer to jsonschema: the fast check leaves it to jsonschema
    0.5,
]
KEYS = ["schema", "signers", "roles", "id", "keys", "keyid", "public_key", "threshold", "x"]
KEYS += list(ROLES)


def _containers(doc: Any) -> list[Any]:
    out, stack = [], [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            out.append(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            out.append(x)
            stack.extend(x)
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(trust_docs()))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_containers(doc)))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if isinstance(where, dict):
            if op == "drop" and where:
                del where[draw(st.sampled_from(sorted(where)))]
            else:
                key = draw(st.sampled_from(sorted(where) if op == "set" and where else KEYS))
                where[key] = copy.deepcopy(draw(st.sampled_from(ODD)))
        elif op == "drop" and where:
            where.pop(draw(st.integers(0, len(where) - 1)))
        elif op == "add" or not where:
            where.append(copy.deepcopy(draw(st.sampled_from([*where, *ODD]))))
        else:
            where[draw(st.integers(0, len(where) - 1))] = copy.deepcopy(draw(st.sampled_from(ODD)))
    return doc


def _has_float(doc: Any) -> bool:
    return any(
        isinstance(x, float)
        for c in _containers(doc)
        for x in (c.values() if isinstance(c, dict) else c)
    )


def _one(**signer: Any) -> dict[str, Any]:
    s = {"id": "ci", "roles": ["checker"], "keys": [{"keyid": KEYID, "public_key": PEM}]}
    roles = {r: {"threshold": 1} for r in ROLES}
    return {"schema": "promote-trust/v1", "signers": [{**s, **signer}], "roles": roles}


SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(trust_docs())
def test_valid_trust_roots_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert _validator().is_valid(doc)
    assert _trust_ok(doc)


@SETTINGS
@given(mutated())
@example(_one(id="ci\n"))  # `$` matches before a final newline, in jsonschema too
@example(_one(id="a" * 65))
@example(_one(id="Ci"))
@example(_one(roles=[]))
@example(_one(roles=["checker", "checker"]))
@example(_one(roles=[["checker"]]))
@example(_one(roles=["owner"]))
@example(_one(keys=[]))
@example(_one(keys=[{"keyid": KEYID, "public_key": PEM}] * 17))
@example(_one(keys=[{"keyid": KEYID + "\n", "public_key": PEM}]))
@example(_one(keys=[{"keyid": KEYID.upper(), "public_key": PEM}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": " " + PEM}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": "-----BEGIN PUBLIC KEY-----" + "A" * 4071}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": PEM, "x": 1}]))
@example(_one(x=1))
@example({**_one(), "signers": [_one()["signers"][0]] * 257})
@example({**_one(), "roles": {r: {"threshold": 257} for r in ROLES}})
@example({**_one(), "roles": {r: {"threshold": True} for r in ROLES}})
@example({**_one(), "roles": {r: {"threshold": 1} for r in ROLES[:3]}})
@example({**_one(), "schema": "promote-trust/v2"})
def test_trust_fast_check_agrees_with_jsonschema(doc: Any) -> None:
    valid = _validator().is_valid(doc)
    fast = _trust_ok(doc)
    assert not fast or valid, "the fast check accepted what the schema refuses"
    if not _has_float(doc):
        assert fast == valid


def test_a_float_threshold_is_left_to_jsonschema() -> None:
    doc = {**_one(), "roles": {r: {"threshold": 1.0} for r in ROLES}}
    assert not _trust_ok(doc) and _validator().is_valid(doc)


def test_refusals_are_worded_by_jsonschema() -> None:
    with pytest.raises(InvalidTrust, match="do not match their schema: signers/0/id: 'C i'"):
        load_trust(json.dumps(_one(id="C i")).encode())


def test_real_trust_roots_load_without_jsonschema(tmp_path: Path) -> None:
    """The trust roots `promote init` writes pass the fast check: loading them does not
    import jsonschema (its import was a good part of a small promote's start-up)."""
    write_demo_trust(tmp_path)
    code = (
        "import sys; from promote.attest.trust import TRUST_PATH, load_trust;"
        f"load_trust(open({str(tmp_path)!r} + '/' + TRUST_PATH, 'rb').read());"
        "print('jsonschema' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False\n"
