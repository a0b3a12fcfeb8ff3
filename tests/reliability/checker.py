"""The one checker every reliability scenario ends with.

It proves, for a workspace, that:

1. `cas fsck --json` and `promote verify --json` are clean, or report exactly the
   damage the scenario caused (every expected problem, and nothing else);
2. the pointer state equals a replay of the ledger, re-derived here independently
   of the product's own verifier (hash links, seq numbers, states, HEAD);
3. every digest the ledger names (capsules, CHECK reports, decisions and the policy
   bundles and inputs they name, states, targets) is present, of its size, intact;
4. no object lies under a wrong name;
5. the authoritative view exists and shows exactly one whole ledger state: the head
   (after recovery), or, straight after a crash, the state its marker
   (`.promote/current`, `.promote/view.json`) names, never a mix and never nothing;
6. no acknowledged put was lost.

Damage a scenario caused is excused per object: a lost or misnamed object only when
an expected problem names that object's own path. Every violation is collected, not
only the first, so `TALLY` counts each lost object; the suite prints it at the end.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import blake3
import rfc8785

__all__ = ["TALLY", "Inconsistent", "check", "count"]

#: category -> figure -> count; printed by conftest's terminal summary.
TALLY: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

Runner = Callable[..., Any]


def count(category: str, figure: str, n: int = 1) -> None:
    TALLY[category][figure] += n


class Inconsistent(AssertionError):
    """The workspace is not in a state the protocol allows."""


@attrs.frozen
class Report:
    problems: list[tuple[str, str]]
    head_seq: int
    state: dict[str, tuple[str, int]]


def _hash(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def _object(store: Path, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return store / "objects/blake3" / hexd[:2] / hexd[2:]


def _state_ref(pointers: Mapping[str, Any]) -> dict[str, Any]:
    doc = {"schema": "promote-state/v1", "pointers": dict(sorted(pointers.items()))}
    data = rfc8785.dumps(doc)
    return {"digest": _hash(data), "size": len(data)}


def _intact(store: Path, ref: Mapping[str, Any]) -> str | None:
    """Why `ref` is not present and intact in `store` (None when it is)."""
    path = _object(store, ref["digest"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    if path.is_symlink():
        return "a symlink"
    if len(data) != ref["size"]:
        return f"{len(data)} bytes, not {ref['size']}"
    if _hash(data) != ref["digest"]:
        return "corrupt"
    return None


def replay(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Entries (parsed) and the state after each (states[0] is the empty one).

    Raises Inconsistent on any break of the chain.
    """
    edir = root / "execution/ledger/entries"
    names = sorted(p.name for p in edir.glob("*") if not p.name.startswith("."))
    want = [f"{n:012d}.json" for n in range(1, len(names) + 1)]
    if names != want:
        raise Inconsistent(f"ledger entries are not 1..N: {names}")
    entries: list[dict[str, Any]] = []
    pointers: dict[str, Any] = {}
    states = [{"pointers": {}, "ref": _state_ref({})}]
    prev = None
    for n, name in enumerate(names, 1):
        data = (edir / name).read_bytes()
        doc = json.loads(data)
        if rfc8785.dumps(doc) != data:
            raise Inconsistent(f"entry {n} is not canonical")
        if doc["seq"] != n or doc["prev"] != prev:
            raise Inconsistent(f"entry {n}: seq or prev link broken")
        if doc["state_before"] != states[-1]["ref"]:
            raise Inconsistent(f"entry {n}: state_before is not the replayed state")
        for c in doc["changes"]:
            if pointers.get(c["path"]) != c["from"]:
                raise Inconsistent(f"entry {n}: change of {c['path']} has the wrong 'from'")
            if c["to"] is None:
                pointers.pop(c["path"], None)
            else:
                pointers[c["path"]] = c["to"]
        ref = _state_ref(pointers)
        if doc["state_after"] != ref:
            raise Inconsistent(f"entry {n}: state_after is not the replay of its changes")
        states.append({"pointers": dict(pointers), "ref": ref})
        entries.append(doc)
        prev = _hash(data)
    return entries, states


def _named_refs(store: Path, entries: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for n, doc in enumerate(entries, 1):
        for key in ("capsule", "check_report", "decision", "policy", "trust", "state_before"):
            if key in doc:
                out.append((f"entry {n} {key}", doc[key]))
        for i, ref in enumerate(doc.get("evidence", [])):
            out.append((f"entry {n} evidence {i}", ref))
        out.append((f"entry {n} state_after", doc["state_after"]))
        for c in doc["changes"]:
            if c["to"] is not None:
                out.append((f"entry {n} {c['path']}", c["to"]))
        try:
            decision = json.loads(_object(store, doc["decision"]["digest"]).read_bytes())
            out.append((f"entry {n} decision input", decision["input"]))
            out.append((f"entry {n} decision policy", decision["policy"]))
        except (OSError, ValueError, KeyError):
            pass  # reported as the decision object itself
    empty = _state_ref({})
    return [(w, r) for w, r in out if r != empty]


def view_files(root: Path) -> dict[str, dict[str, Any]]:
    """What a reader of the view sees: path -> {digest, size}, following links."""
    config = json.loads((root / "control/promote/config.json").read_bytes())
    tops = sorted({p.split("/")[0] for p in config.get("allow", ["release/"])})
    out = {}
    for top in tops:
        for dirpath, _dirs, files in os.walk(root / top, followlinks=True):
            for f in files:
                full = Path(dirpath, f)
                rel = full.relative_to(root).as_posix()
                try:
                    data = full.read_bytes()
                except OSError as e:  # a dangling link: what a reader gets is an error
                    out[rel] = {"digest": f"unreadable: {e.strerror}", "size": -1}
                    continue
                out[rel] = {"digest": _hash(data), "size": len(data)}
    return out


def _cli_problems(root: Path, runner: Runner) -> tuple[dict[str, int], set[tuple[str, str]]]:
    cmds = [("cas", ["fsck", "--json"]), ("promote", ["verify", "--json"])]
    many = getattr(getattr(runner, "__self__", None), "run_many", None)
    if many is not None:  # the zygote: run both at once
        results = many([{"prog": p, "argv": a, "cwd": root} for p, a in cmds])
    else:
        results = [runner(p, *a, cwd=root) for p, a in cmds]
    codes = {}
    problems: set[tuple[str, str]] = set()
    for (prog, argv), r in zip(cmds, results, strict=True):
        codes[prog] = r.returncode
        if r.returncode not in (0, 3):
            raise Inconsistent(f"{prog} {argv[0]} exited {r.returncode}: {r.stderr.decode()}")
        try:
            doc = json.loads(r.stdout)
        except ValueError as e:
            raise Inconsistent(f"{prog} {argv[0]} --json printed no JSON: {r.stdout!r}") from e
        if (r.returncode == 0) != (not doc["problems"]):
            raise Inconsistent(f"{prog} {argv[0]}: exit {r.returncode} but {doc['problems']}")
        problems |= {(p["kind"], p["location"]) for p in doc["problems"]}
    return codes, problems


def check(
    root: Path,
    runner: Runner,
    *,
    category: str,
    expect: Iterable[tuple[str, str]] = (),
    allow: Iterable[tuple[str, str]] = (),
    view: str = "head",
    acked: Iterable[str] = (),
    oracle: bool = True,
) -> Report:
    """Run every check; raise Inconsistent (and count it) on the first violation.

    `expect` lists the damage the scenario caused as (kind, location glob) pairs: the
    CLIs must report each of them and nothing else. `view` is "head" (the view shows
    the head state exactly) or "any" (it shows one whole ledger state, as straight
    after a crash). `oracle=False` skips the independent replay, for scenarios that
    broke the ledger on purpose.
    """
    count(category, "checks")
    found: list[str] = []
    lost: list[str] = []
    try:
        report = _check(
            root, runner, list(expect), list(allow), view, list(acked), oracle, found, lost
        )
    except Inconsistent as e:  # a violation the later checks cannot go on from
        found.append(str(e))
        report = None
    if found:
        count(category, "inconsistent")
        count(category, "lost", len(lost))
        raise Inconsistent(f"{root}: " + "; ".join(found))
    assert report is not None
    return report


def _excused(rel: str, expect: list[tuple[str, str]], kinds: tuple[str, ...]) -> bool:
    """Whether an expected problem of one of `kinds` names the store path `rel` itself."""
    return any(k in kinds and fnmatch.fnmatch(rel, g) for k, g in expect)


def _check(
    root: Path,
    runner: Runner,
    expect: list[tuple[str, str]],
    allow: list[tuple[str, str]],
    view: str,
    acked: list[str],
    oracle: bool,
    found: list[str],
    lost: list[str],
) -> Report:
    store = root / ".cas"
    problems: set[tuple[str, str]] = set()
    if view == "head":
        _codes, problems = _cli_problems(root, runner)
        unexpected = {
            p
            for p in problems
            if not any(p[0] == k and fnmatch.fnmatch(p[1], g) for k, g in expect + allow)
        }
        missing = [
            (k, g)
            for k, g in expect
            if not any(p[0] == k and fnmatch.fnmatch(p[1], g) for p in problems)
        ]
        if unexpected or missing:
            found.append(
                f"fsck/verify report {sorted(problems)}; unexpected {sorted(unexpected)},"
                f" not reported {missing}"
            )
    for digest in acked:
        path = _object(store, digest)
        if not path.is_file() or _hash(path.read_bytes()) != digest:
            found.append(f"acknowledged object {digest} was lost")
            lost.append(digest)
    if not oracle:
        return Report(sorted(problems), -1, {})
    entries, states = replay(root)
    head_doc = json.loads((root / "execution/ledger/HEAD").read_bytes()) if entries else None
    if head_doc is not None:
        seqs = {
            n: _hash((root / f"execution/ledger/entries/{n:012d}.json").read_bytes())
            for n in range(1, len(entries) + 1)
        }
        lag_ok = view == "any"
        if head_doc["seq"] != len(entries) and not (lag_ok and 1 <= head_doc["seq"] < len(entries)):
            raise Inconsistent(f"ledger HEAD names entry {head_doc['seq']} of {len(entries)}")
        if head_doc["entry"] != seqs[head_doc["seq"]]:
            raise Inconsistent("ledger HEAD names an entry hash that is not that entry's")
        if head_doc["state"] != states[head_doc["seq"]]["ref"]:
            raise Inconsistent("ledger HEAD's pointer state is not the replay of the ledger")
    head_state = states[-1]
    if head_state["pointers"]:
        stored = json.loads(_object(store, head_state["ref"]["digest"]).read_bytes())
        if stored["pointers"] != head_state["pointers"]:
            raise Inconsistent("the stored pointer state differs from the replay of the ledger")
    for where, ref in _named_refs(store, entries):
        why = _intact(store, ref)
        rel = _object(store, ref["digest"]).relative_to(store).as_posix()
        if why and not _excused(rel, expect, ("mismatch", "missing", "truncated")):
            found.append(f"{where}: {ref['digest']} is {why} (lost)")
            lost.append(ref["digest"])
    wrong = [
        w
        for w in _misnamed(store)
        if not _excused(f"objects/blake3/{w}", expect, ("mismatch", "not-regular"))
    ]
    if wrong:
        found.append(f"objects under a wrong name: {wrong}")
    found.extend(_view_violations(root, view, head_state, states))
    return Report(
        sorted(problems),
        len(entries),
        {p: (r["digest"], r["size"]) for p, r in head_state["pointers"].items()},
    )


def _view_violations(
    root: Path, view: str, head_state: dict[str, Any], states: list[dict[str, Any]]
) -> list[str]:
    """What is wrong with the view: it must exist (every top of the allow-list) and
    show exactly one ledger state, the head's (`view="head"`) or the one its marker
    names (`view="any"`); a copy-mode switch marked pending may show a mix."""
    config = json.loads((root / "control/promote/config.json").read_bytes())
    tops = sorted({p.split("/")[0] for p in config.get("allow", ["release/"])})
    copy = config.get("view", {}).get("mode", "symlink") == "copy"
    out = [f"the view is missing {top}/" for top in tops if not (root / top).is_dir()]
    if out:
        return out
    shown = view_files(root)
    if view == "head":
        if shown != head_state["pointers"]:
            out.append(
                f"the view shows {sorted(shown)} ≠ the head state {sorted(head_state['pointers'])}"
            )
        return out
    if copy and _copy_pending(root):
        return out
    marker = _marker(root, copy)
    named = [s for s in states if s["ref"]["digest"] == marker]
    if not named:
        out.append(f"the view's marker names {marker}, no state of the ledger")
    elif shown != named[0]["pointers"]:
        out.append(f"the view shows a mix of states: {shown}, its marker names {marker}")
    return out


def _marker(root: Path, copy: bool) -> str | None:
    """The state digest the view says it shows."""
    try:
        if copy:
            return str(json.loads((root / ".promote/view.json").read_bytes())["state"]["digest"])
        return "blake3:" + os.readlink(root / ".promote/current").split("/")[-1]
    except (OSError, ValueError, KeyError):
        return None


def _copy_pending(root: Path) -> bool:
    """A copy-mode view records an unfinished switch: it is not atomic, by design."""
    try:
        return bool(json.loads((root / ".promote/view.json").read_bytes()).get("pending"))
    except (OSError, ValueError):
        return False


def _misnamed(store: Path) -> list[str]:
    out = []
    base = store / "objects/blake3"
    for fan in sorted(os.listdir(base)) if base.is_dir() else []:
        for name in sorted(os.listdir(base / fan)):
            p = base / fan / name
            if (
                p.is_symlink()
                or not p.is_file()
                or blake3.blake3(p.read_bytes()).hexdigest() != fan + name
            ):
                out.append(f"{fan}/{name}")
    return out
