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

The workspace's config says where its store and ledger are, and the checker reads
them there itself: a store directory or an S3 bucket (through boto3, with the
credentials of `env`), a ledger directory or a PostgreSQL database (through psycopg:
the entry rows, the head row and the pointer rows, which must be the replay's head
state). A PostgreSQL head is written in the entry's own transaction, so it may never
lag, even straight after a crash; the file ledger's HEAD cache may.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

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


class Objects:
    """The objects of a store directory, read straight from the file system."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, digest: str) -> bytes | None:
        """The bytes under `digest`'s name (None when there is nothing)."""
        try:
            return _object(self.path, digest).read_bytes()
        except FileNotFoundError:
            return None

    def is_link(self, digest: str) -> bool:
        return _object(self.path, digest).is_symlink()

    def location(self, digest: str) -> str:
        """The object's name as `cas fsck` reports it."""
        return _object(self.path, digest).relative_to(self.path).as_posix()

    def misnamed(self) -> list[str]:
        """Names (the digest's hex) whose bytes are not that digest's."""
        return _misnamed(self.path)


class S3Objects(Objects):
    """The objects of a store in S3 (`s3://bucket/prefix`), read with boto3 and the
    credentials of `env`, not through the product's backend."""

    _clients: ClassVar[dict[tuple[str, ...], Any]] = {}

    def __init__(self, url: str, env: Mapping[str, str]) -> None:
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        names = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        key = tuple(env[n] for n in names)
        if key not in self._clients:  # one per server and keys: a client is slow to make
            self._clients[key] = boto3.session.Session().client(
                "s3",
                endpoint_url=key[0],
                aws_access_key_id=key[1],
                aws_secret_access_key=key[2],
                region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            )
        self.client = self._clients[key]

    def location(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return f"blake3/{hexd[:2]}/{hexd[2:]}"

    def read(self, digest: str) -> bytes | None:
        return self._get(self.root + self.location(digest))

    def _get(self, key: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        with body:
            return bytes(body.read())

    def is_link(self, digest: str) -> bool:
        return False

    def keys(self, under: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.root + under
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.root) :]

    def misnamed(self) -> list[str]:
        out = []
        for rel in self.keys("blake3/"):
            name = rel.removeprefix("blake3/")
            data = self._get(self.root + rel)
            if data is None or blake3.blake3(data).hexdigest() != name.replace("/", ""):
                out.append(name)
        return out


def _objects(root: Path, env: Mapping[str, str]) -> Objects:
    spec = str(_config(root).get("store", ".cas"))
    if spec.startswith("s3://"):
        return S3Objects(spec, env)
    return Objects(root / spec)


def _config(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "control/promote/config.json").read_bytes()))


def _intact(store: Path | Objects, ref: Mapping[str, Any]) -> str | None:
    """Why `ref` is not present and intact in `store` (None when it is)."""
    objects = store if isinstance(store, Objects) else Objects(store)
    data = objects.read(ref["digest"])
    if data is None:
        return "missing"
    if objects.is_link(ref["digest"]):
        return "a symlink"
    if len(data) != ref["size"]:
        return f"{len(data)} bytes, not {ref['size']}"
    if _hash(data) != ref["digest"]:
        return "corrupt"
    return None


class LedgerFiles:
    """The file ledger: `entries/<seq>.json` and the HEAD cache, which may lag."""

    may_lag = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[bytes]:
        edir = self.path / "entries"
        names = sorted(p.name for p in edir.glob("*") if not p.name.startswith("."))
        want = [f"{n:012d}.json" for n in range(1, len(names) + 1)]
        if names != want:
            raise Inconsistent(f"ledger entries are not 1..N: {names}")
        return [(edir / name).read_bytes() for name in names]

    def head(self) -> dict[str, Any] | None:
        """HEAD as {seq, entry, state}; None when there is none."""
        try:
            return dict(json.loads((self.path / "HEAD").read_bytes()))
        except FileNotFoundError:
            return None

    def pointers(self) -> dict[str, Any] | None:
        """The pointer rows a database holds (a file ledger has none: None)."""
        return None


class LedgerRows(LedgerFiles):
    """The PostgreSQL ledger: the rows of promote_ledger, promote_head and
    promote_pointers, read with psycopg."""

    may_lag = False

    def __init__(self, url: str) -> None:
        self.url = url

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            return list(conn.execute(sql).fetchall())

    def entries(self) -> list[bytes]:
        rows = self._rows("SELECT seq, hash, data FROM promote_ledger ORDER BY seq")
        seqs = [int(seq) for seq, _, _ in rows]
        if seqs != list(range(1, len(rows) + 1)):
            raise Inconsistent(f"ledger rows are not 1..N: {seqs}")
        for seq, digest, data in rows:
            if digest != _hash(bytes(data)):
                raise Inconsistent(f"ledger row {seq}: its hash column is not its data's")
        return [bytes(data) for _, _, data in rows]

    def head(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT seq, entry, state_digest, state_size FROM promote_head")
        if len(rows) != 1:
            raise Inconsistent(f"promote_head holds {len(rows)} rows, not one")
        seq, entry, digest, size = rows[0]
        if not seq:
            if entry is not None or digest not in (None, _state_ref({})["digest"]):
                raise Inconsistent("promote_head at seq 0 names an entry or a state")
            return None
        return {"seq": int(seq), "entry": entry, "state": {"digest": digest, "size": int(size)}}

    def pointers(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT path, digest, size FROM promote_pointers")
        return {p: {"digest": d, "size": int(n)} for p, d, n in rows}


def _ledger(root: Path) -> LedgerFiles:
    spec = str(_config(root).get("ledger", "execution/ledger"))
    if spec.startswith(("postgresql://", "postgres://")):
        return LedgerRows(spec)
    return LedgerFiles(root / spec)


def replay(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Entries (parsed) and the state after each (states[0] is the empty one).

    Raises Inconsistent on any break of the chain.
    """
    return _replay(_ledger(root))


def _replay(ledger: LedgerFiles) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries: list[dict[str, Any]] = []
    pointers: dict[str, Any] = {}
    states = [{"pointers": {}, "ref": _state_ref({})}]
    prev = None
    for n, data in enumerate(ledger.entries(), 1):
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


def _named_refs(
    store: Path | Objects, entries: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
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
            objects = store if isinstance(store, Objects) else Objects(store)
            decision = json.loads(objects.read(doc["decision"]["digest"]) or b"")
            out.append((f"entry {n} decision input", decision["input"]))
            out.append((f"entry {n} decision policy", decision["policy"]))
        except (OSError, ValueError, KeyError):
            pass  # reported as the decision object itself (missing: b"" is no JSON)
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


def _cli_problems(
    root: Path, runner: Runner, env: Mapping[str, str]
) -> tuple[dict[str, int], set[tuple[str, str]]]:
    cmds = [("cas", ["fsck", "--json"]), ("promote", ["verify", "--json"])]
    many = getattr(getattr(runner, "__self__", None), "run_many", None)
    if many is not None:  # the zygote: run both at once
        results = many([{"prog": p, "argv": a, "cwd": root, "env": dict(env)} for p, a in cmds])
    else:
        results = [runner(p, *a, cwd=root, env=dict(env)) for p, a in cmds]
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
    env: Mapping[str, str] | None = None,
) -> Report:
    """Run every check; raise Inconsistent (and count it) on the first violation.

    `expect` lists the damage the scenario caused as (kind, location glob) pairs: the
    CLIs must report each of them and nothing else. `view` is "head" (the view shows
    the head state exactly) or "any" (it shows one whole ledger state, as straight
    after a crash). `oracle=False` skips the independent replay, for scenarios that
    broke the ledger on purpose. `env` is the CLIs' environment, and holds the
    credentials of an S3 store (the checker's own reads use them too).
    """
    count(category, "checks")
    found: list[str] = []
    lost: list[str] = []
    try:
        report = _check(
            root,
            runner,
            list(expect),
            list(allow),
            view,
            list(acked),
            oracle,
            dict(env or {}),
            found,
            lost,
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
    env: dict[str, str],
    found: list[str],
    lost: list[str],
) -> Report:
    store = _objects(root, env)
    problems: set[tuple[str, str]] = set()
    if view == "head":
        _codes, problems = _cli_problems(root, runner, env)
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
        data = store.read(digest)
        if data is None or store.is_link(digest) or _hash(data) != digest:
            found.append(f"acknowledged object {digest} was lost")
            lost.append(digest)
    if not oracle:
        return Report(sorted(problems), -1, {})
    ledger = _ledger(root)
    entries, states = _replay(ledger)
    head_doc = ledger.head()
    # A file ledger's HEAD is a cache that may lag (`FileLedger.head` reads on from it):
    # a fault between the first entry's link and HEAD's write leaves none yet, which is
    # the same as a HEAD lagging from the genesis, and what `promote recover` rewrites.
    if entries and head_doc is None and not (view == "any" and ledger.may_lag):
        raise Inconsistent(f"the ledger holds {len(entries)} entries and no head")
    if head_doc is not None:
        lag_ok = view == "any" and ledger.may_lag
        if head_doc["seq"] != len(entries) and not (lag_ok and 1 <= head_doc["seq"] < len(entries)):
            raise Inconsistent(f"ledger HEAD names entry {head_doc['seq']} of {len(entries)}")
        if head_doc["entry"] != _hash(rfc8785.dumps(entries[head_doc["seq"] - 1])):
            raise Inconsistent("ledger HEAD names an entry hash that is not that entry's")
        if head_doc["state"] != states[head_doc["seq"]]["ref"]:
            raise Inconsistent("ledger HEAD's pointer state is not the replay of the ledger")
    head_state = states[-1]
    rows = ledger.pointers()
    if rows is not None and rows != head_state["pointers"]:
        raise Inconsistent("the database's pointer rows are not the replay of the ledger")
    if head_state["pointers"]:
        data = store.read(head_state["ref"]["digest"])  # missing: a lost state_after, below
        if data is not None and json.loads(data)["pointers"] != head_state["pointers"]:
            raise Inconsistent("the stored pointer state differs from the replay of the ledger")
    for where, ref in _named_refs(store, entries):
        why = _intact(store, ref)
        rel = store.location(ref["digest"])
        if why and not _excused(rel, expect, ("mismatch", "missing", "truncated")):
            found.append(f"{where}: {ref['digest']} is {why} (lost)")
            lost.append(ref["digest"])
    wrong = [
        w
        for w in store.misnamed()
        if not _excused(
            store.location(f"blake3:{w.replace('/', '')}"),
            expect,
            ("mismatch", "not-regular", "misplaced"),
        )
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
    config = _config(root)
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
