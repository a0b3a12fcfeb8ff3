"""Checks of a workspace: the ledger chain, the pointer state, the view.

`promote ledger verify` runs the ledger checks, `promote verify` (the CI gate) adds
the view, and `cas fsck` inside a workspace runs the ledger checks too. The ledger
checks are the chain (`verify_ledger`), the re-justification of every entry
(`promote.justify`) and the checkpoints (`promote.rollback`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cas.backend import ObjectStore, Problem
from cas.digest import ObjectRef
from cas.errors import CasError, IntegrityError, ObjectMissing
from promote.canonical import load_json
from promote.errors import WorkspaceError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import EMPTY_STATE, Entry, parse_entry
from promote.model import State
from promote.workspace import Workspace

__all__ = [
    "advance_checkpoint",
    "chain_and_justify",
    "resume_point",
    "read_outside_checkpoint",
    "ledger_problems",
    "trust_problems",
    "verify_ledger",
    "verify_workspace",
]


def _object_problem(store: ObjectStore, ref: ObjectRef, where: str) -> Problem | None:
    try:
        size = store.size(ref.digest)
        if size != ref.size:
            kind = "truncated" if size < ref.size else "mismatch"
            return Problem(
                kind,
                where,
                f"object has {size} bytes, the ledger promised {ref.size}",
                str(ref.digest),
            )
        for _ in store.open(ref.digest):
            pass
    except ObjectMissing:
        return Problem("missing", where, "referenced object is not in the store", str(ref.digest))
    except IntegrityError as e:
        return Problem("mismatch", where, str(e), str(ref.digest))
    return None


def verify_ledger(
    ledger: CommitBackend,
    store: ObjectStore,
    since: tuple[Entry, State] | None = None,
    each: Callable[[int, Entry], None] | None = None,
) -> tuple[list[Problem], State | None, ObjectRef | None]:
    """Re-hash the chain, replay the changes, check every referenced object.

    With `since`, a trusted entry and the state it left (`resume_point`), only the
    entries after it, each linking to the one before from it. `each(seq, entry)` is
    called with every entry parsed, after its checks.

    Returns the problems, and the replayed state and its ref (None if unusable).
    """
    problems: list[Problem] = []
    try:
        head = ledger.head()
    except IntegrityError as e:  # a broken ledger is a finding; an unreachable one is an error
        return [Problem("ledger", ledger.location, str(e))], None, None
    state = EMPTY_STATE
    prev = None
    first = 1
    if since is not None:
        state, prev, first = since[1], since[0].hash, since[0].seq + 1
    empty = EMPTY_STATE.ref()  # in no store
    checked = {(empty.digest.algorithm, empty.digest.hex, empty.size)}  # tuples hash fast
    state_ref = state.ref()
    broken = False
    for seq in range(first, head.seq + 1):
        where = f"ledger entry {seq}"
        try:
            entry = parse_entry(ledger.read(seq))
        except IntegrityError as e:
            problems.append(Problem("ledger", where, str(e)))
            broken = True
            break
        doc = entry.doc
        if doc["seq"] != seq:
            problems.append(Problem("ledger", where, f"holds seq {doc['seq']}: entries reordered"))
            broken = True
        if doc["prev"] != (str(prev) if prev else None):
            problems.append(
                Problem(
                    "ledger", where, f"prev is {doc['prev']}, but entry {seq - 1} hashes to {prev}"
                )
            )
            broken = True
        if entry.state_before != state_ref:
            problems.append(
                Problem("ledger", where, "state_before is not the state the entries before it left")
            )
            broken = True
        changes = entry.changes
        for change in changes:
            if state.get(change.path) != change.before:
                problems.append(
                    Problem(
                        "ledger",
                        where,
                        f"change of {change.path}: 'from' is not what the path held",
                    )
                )
                broken = True
        state = state.apply(changes)
        state_ref = state.ref()
        if state_ref != entry.state_after:
            problems.append(
                Problem("ledger", where, "replaying its changes does not give its state_after")
            )
            broken = True
        refs = entry.refs()
        refs += [c.after for c in changes if c.after is not None]
        for ref in refs:
            key = (ref.digest.algorithm, ref.digest.hex, ref.size)
            if key in checked:
                continue
            checked.add(key)
            found = _object_problem(store, ref, where)
            if found:
                problems.append(found)
        if each is not None:
            each(seq, entry)
        prev = entry.hash
    if not broken and head.entry != prev:
        problems.append(
            Problem(
                "ledger", "ledger HEAD", f"names {head.entry}, but the last entry hashes to {prev}"
            )
        )
        broken = True
    if not broken and head.state != state_ref:
        problems.append(
            Problem("pointer", "ledger HEAD", "pointer state differs from the replay of the ledger")
        )
    if not broken:
        try:
            stored = (
                State.from_dict(load_json(store.read_bytes(head.state.digest), "state"))
                if head.state != EMPTY_STATE.ref()
                else EMPTY_STATE
            )
            if stored != state:
                problems.append(
                    Problem(
                        "pointer",
                        "pointer state",
                        "stored state differs from the replay",
                        str(head.state.digest),
                    )
                )
        except CasError:
            pass  # already reported as a missing or corrupt object
    return problems, (None if broken else state), (None if broken else state_ref)


#: The fewest entries a worker re-justifies at a time (forking and the walk to a
#: range's start cost about as much as this many entries).
MIN_RANGE = 64


def chain_and_justify(
    ws: Workspace,
    ledger: CommitBackend,
    store: ObjectStore,
    since: tuple[Entry, State] | None = None,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    jobs: int | None = None,
    every: int | None = None,
) -> tuple[list[Problem], State | None, ObjectRef | None, list[Problem]]:
    """`verify_ledger`, and the re-justification of the entries (`justify_ledger`, []
    when the chain is not whole): the same findings, in the same order, for any `jobs`
    (default: the cores this process may use, `cas._workers.default_jobs`).

    With more than one job, on a file ledger and a directory store, in a process with
    no other thread: one walk over the chain here finds where ranges of entries start
    (`promote.justify.range_starts`: the head, state and pins before each), then the
    chain checks and the ranges (of `every` entries; default: about four per job, at
    least `MIN_RANGE`) run on forked processes (`cas._workers.fork_map`), which only
    read. The re-justification then runs whether or not the chain is whole; what it
    found, or the first error it raised in entry order (an engine timeout under
    `--replay`), is used only when the chain is whole, as when it runs after the chain.

    Raises:
        EngineTimeout, DatabaseError: what the re-justification could not finish.
    """
    import threading

    from cas._workers import default_jobs, fork_map
    from cas.local import LocalStore
    from promote.justify import justify_range, range_starts
    from promote.ledger.files import FileLedger

    jobs = default_jobs() if jobs is None else jobs
    forkable = isinstance(ledger, FileLedger) and isinstance(store, LocalStore)
    # a process with other threads (the web view's server) is never forked: a lock one
    # of them holds would stay held in the child
    if jobs < 2 or not forkable or threading.active_count() > 1:
        return _chain_with_justify(ws, ledger, store, since, allow_unsigned, replay)

    error: CasError | None = None
    ranges: list[tuple[Any, int]] = []
    try:
        first = since[0].seq + 1 if since is not None else 1
        size = max(0, ledger.head().seq - first + 1)
        step = every or max(MIN_RANGE, -(-size // (jobs * 4)))
        starts, end = range_starts(ledger, store, step, since=since, allow_unsigned=allow_unsigned)
        stops = [s.seq for s in starts[1:]] + [end]
        ranges = list(zip(starts, stops, strict=False))  # none when there is no entry
    except CasError as e:  # raised below only if the chain is whole, as one by one
        error = e

    def run(task: int) -> Any:
        if task < 0:
            return verify_ledger(ledger, store, since)
        start, stop = ranges[task]
        try:
            found = justify_range(
                ledger,
                store,
                start,
                stop,
                allow_unsigned=allow_unsigned,
                replay=replay,
                engine_config=ws.engine_config,
            )
            return found, None
        except CasError as e:  # as above
            return None, e

    tasks = [-1, *range(len(ranges))]
    results = dict(fork_map(run, tasks, jobs))
    problems, state, ref = results[0]
    if state is None:
        return problems, state, ref, []
    if error is not None:
        raise error
    justified = []
    for i in range(len(ranges)):
        found, failed = results[i + 1]
        if failed is not None:
            raise failed  # the first in entry order, as one by one
        justified += found
    return problems, state, ref, justified


def _chain_with_justify(
    ws: Workspace,
    ledger: CommitBackend,
    store: ObjectStore,
    since: tuple[Entry, State] | None,
    allow_unsigned: bool,
    replay: bool,
) -> tuple[list[Problem], State | None, ObjectRef | None, list[Problem]]:
    """`chain_and_justify` in this process, in one walk: each entry `verify_ledger`
    parses is handed to the re-justification (`justify_steps`), so it is read and
    parsed once. As with forked ranges, what the re-justification found, or the first
    error it raised, is used only when the chain is whole."""
    from promote.justify import justify_steps

    box: list[tuple[int, Entry]] = []

    def handed() -> Iterator[tuple[int, Entry]]:
        while True:
            yield box.pop()  # `step` puts exactly one entry in before each `next`

    steps: Iterator[Problem | None] | None = None
    error: CasError | None = None
    try:
        steps = justify_steps(
            ledger,
            store,
            handed(),
            since,
            allow_unsigned=allow_unsigned,
            replay=replay,
            engine_config=ws.engine_config,
        )
    except CasError as e:  # as below
        error = e
    justified: list[Problem] = []

    def step(seq: int, entry: Entry) -> None:
        nonlocal steps, error
        if steps is None:
            return
        box.append((seq, entry))
        try:
            found = next(steps)
        except StopIteration:  # a broken link: the chain reports it
            steps = None
            return
        except CasError as e:  # raised below only if the chain is whole, as before
            error, steps = e, None
            return
        if found is not None:
            justified.append(found)

    problems, state, ref = verify_ledger(ledger, store, since, step)
    if state is None:
        return problems, state, ref, []
    if error is not None:
        raise error
    return problems, state, ref, justified


def open_ledger(ws: Workspace) -> CommitBackend:
    """The workspace's commit backend: `$PROMOTE_LEDGER`, else the config's "ledger".

    A `postgresql://` URL is a PgLedger; anything else a FileLedger directory
    (relative to the workspace root).
    """
    import os

    from promote.ledger.files import FileLedger
    from promote.ledger.pg import PgLedger, is_pg_url

    spec = os.environ.get("PROMOTE_LEDGER") or ws.ledger_spec
    if is_pg_url(spec):
        return PgLedger(spec)
    if "://" in spec:
        raise WorkspaceError(f"unsupported ledger {spec!r}: want a directory or postgresql://")
    return FileLedger(ws.root / spec, ws.store)


def ledger_problems(root: Path, store: ObjectStore) -> list[Problem]:
    """For `cas fsck`: the ledger checks of the workspace at `root` (re-justification
    and its checkpoint included), and its view."""
    from cas.local import LocalStore

    ws = Workspace.load(root)
    ledger = open_ledger(ws)
    problems, state, ref, justified = chain_and_justify(ws, ledger, store)
    problems += trust_problems(ws, ledger, store, state is not None, justified=justified)
    usable = state is not None and ref is not None
    if usable and (ws.view_mode == "copy" or isinstance(ws.store, LocalStore)):
        assert state is not None and ref is not None
        problems += _view_damage(ws, ledger, state, ref)
    return problems


def trust_problems(
    ws: Workspace,
    ledger: CommitBackend,
    store: ObjectStore,
    chain_ok: bool,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    checkpoint: Path | None = None,
    witnesses: Sequence[Any] = (),
    require: int = 0,
    log_key: Any = None,
    since: tuple[Entry, State] | None = None,
    justified: list[Problem] | None = None,
) -> list[Problem]:
    """Re-justification of every entry (`promote.justify`, when the chain is whole),
    and the ledger against the workspace's checkpoint and `checkpoint` (a file kept
    elsewhere) (`promote.rollback`).

    With `since` (`resume_point`): only the entries after it are re-justified, and
    the workspace's checkpoint is not proven again (its frontier vouched for it).
    `justified`: the re-justification's findings, already made (`chain_and_justify`)."""
    from promote.justify import justify_ledger
    from promote.rollback import (
        CHECKPOINT_FILE,
        check_checkpoint,
        read_checkpoint,
        workspace_checkpoint,
    )

    problems: list[Problem] = []
    if chain_ok and justified is not None:
        problems += justified
    elif chain_ok:
        problems += justify_ledger(
            ledger,
            store,
            allow_unsigned=allow_unsigned,
            replay=replay,
            engine_config=ws.engine_config,
            since=since,
        )
    own = read_checkpoint(workspace_checkpoint(ws.root), missing_ok=True)
    if own is not None and since is None:
        problems += check_checkpoint(ledger, own, CHECKPOINT_FILE)
    if checkpoint is not None:
        outside = read_outside_checkpoint(ws, checkpoint, witnesses, require, log_key)
        problems += check_checkpoint(ledger, outside, str(checkpoint))
    return problems


def read_outside_checkpoint(
    ws: Workspace,
    path: Path,
    witnesses: Sequence[Any] = (),
    require: int = 0,
    log_key: Any = None,
) -> Any:
    """A checkpoint kept elsewhere: a C2SP signed note (ADR 12), or the older
    `promote-checkpoint/v1` JSON (first byte `{`, read for one release). A note must be
    signed by the log (`log_key`, a vkey `Verifier`; default the workspace's runner key
    named as the note's origin) and cosigned by `require` of `witnesses`
    (`promote.ledger.witness.verify_cosigned`). Returns its size and root.

    Raises:
        UsageError, InvalidDocument, MalformedNote (2): unreadable or malformed, or
            cosignatures required of a JSON checkpoint.
        ProofError (3): not signed by the log, too few cosignatures, another log.
    """
    import os

    from cas.errors import UsageError
    from promote.errors import InvalidDocument
    from promote.ledger.merkle import ProofError
    from promote.rollback import MAX_CHECKPOINT, read_checkpoint

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"checkpoint {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CHECKPOINT + 1)
    if data.lstrip()[:1] == b"{":
        if require:
            raise UsageError(
                f"checkpoint {path}: a JSON checkpoint carries no cosignatures;"
                " --witnesses needs a C2SP one ('promote ledger checkpoint')"
            )
        return read_checkpoint(path)
    if len(data) > MAX_CHECKPOINT:
        raise InvalidDocument(f"checkpoint {path}: larger than {MAX_CHECKPOINT} bytes")
    from promote.ledger.witness import LogConfig, verify_cosigned
    from promote.receipt import note_verifier, read_note_checkpoint

    try:
        body, tree = read_note_checkpoint(data, None)
        if log_key is None:
            from promote.attest.runner import load_runner_key

            log_key = note_verifier(load_runner_key(ws.root).public_key(), body.origin)
        verify_cosigned(data, LogConfig(log_key.name, (log_key,)), witnesses, require)
    except (ProofError, InvalidDocument) as e:
        raise type(e)(f"checkpoint {path}: {e}") from None
    return tree


def resume_point(ws: Workspace, ledger: CommitBackend) -> tuple[Entry, State] | str:
    """Where `--since-checkpoint` starts: the last entry of the workspace's checkpoint
    and the state it left, when the checkpoint frontier vouches for the checkpoint
    and the ledger extends it (`promote.rollback.checkpoint_entry`), the entry parses,
    its state is in the store and hashes to its state_after, and its pins can be read.
    Else the line saying why not (the caller verifies in full).

    Trusts the checkpoint as the clean verification (or promotion) that wrote it: the
    entries up to it are not checked again. Nothing after it is taken on trust.
    """
    from promote.justify import Unjustified, pins_after
    from promote.ledger.backend import load_state
    from promote.rollback import checkpoint_entry

    found = checkpoint_entry(ws.root, ledger)
    if isinstance(found, str):
        return found
    seq, data = found
    try:
        entry = parse_entry(data)
        if entry.seq != seq:
            return f"ledger entry {seq} holds seq {entry.seq}"
        state = load_state(ws.store, entry.state_after)
        if state.ref() != entry.state_after:
            return f"the state ledger entry {seq} left is not canonical"
        pins_after(ws.store, entry)
    except (CasError, Unjustified) as e:
        return f"ledger entry {seq}, the checkpoint's last: {e}"
    return entry, state


def advance_checkpoint(ws: Workspace, ledger: CommitBackend) -> None:
    """After a clean verification: move the workspace's checkpoint forward. A
    workspace whose `.promote/` cannot be written keeps the checkpoint it had."""
    from promote.errors import DiskError
    from promote.rollback import advance

    try:
        advance(ws.root, ledger)
    except (DiskError, OSError):
        pass


def _view_damage(
    ws: Workspace, ledger: CommitBackend, state: State, ref: ObjectRef
) -> list[Problem]:
    """What is wrong in the view, as opposed to merely behind.

    Checked under the view lock, so no switch is seen half-done. A view that shows an
    older state of the ledger, intact, is lagging (a promoter between its commit and
    its switch, or a crash there): `promote recover` or the next promotion catches it
    up, and `promote verify` reports it. A view showing anything else is damage.
    """
    from promote.ledger.backend import load_state
    from promote.ledger.files import file_lock
    from promote.view import View

    view = View(ws)
    with file_lock(ws.meta_dir / "view.lock", what="the view lock"):
        shown = view.shown()
        if ws.view_mode == "copy" and shown is None:
            return []  # a copy switch interrupted: recover finishes it, verify reports it
        if shown is not None and shown != ref.digest.hex:
            for seq in range(ledger.head().seq, 0, -1):
                after = parse_entry(ledger.read(seq)).state_after
                if after.digest.hex == shown:
                    state, ref = load_state(ws.store, after), after
                    break
        return view.problems(state, ref)


def linked_dirs(ws: Workspace) -> list[Problem]:
    """The store, ledger and policy directories, where they or a directory on the
    way to them inside the workspace is a symlink: their contents then live outside
    the workspace, where the config did not put them."""
    import os
    import stat

    out = []
    places: list[tuple[str, Path]] = [("policy", ws.policy_dir)]
    if isinstance(ws.store_spec, Path):
        places.append(("store", ws.store_spec))
    if "://" not in ws.ledger_spec:
        places.append(("ledger", ws.ledger_dir))
    for what, path in places:
        try:
            rel = path.relative_to(ws.root)
            steps = [ws.root.joinpath(*rel.parts[: n + 1]) for n in range(len(rel.parts))]
        except ValueError:  # an absolute store the config names: only itself
            steps = [path]
        for step in steps:
            try:
                linked = stat.S_ISLNK(os.lstat(step).st_mode)
            except OSError:
                break
            if linked:
                where = (
                    step.relative_to(ws.root).as_posix()
                    if step.is_relative_to(ws.root)
                    else str(step)
                )
                out.append(
                    Problem(
                        "symlinked",
                        where,
                        f"the {what} directory goes through a symlink (to {os.readlink(step)})",
                    )
                )
                break
    return out


def verify_workspace(
    ws: Workspace,
    ledger: CommitBackend,
    view: bool = True,
    *,
    allow_unsigned: bool = False,
    replay: bool = False,
    checkpoint: Path | None = None,
    witnesses: Sequence[Any] = (),
    require: int = 0,
    log_key: Any = None,
    since_checkpoint: bool = False,
    notes: list[str] | None = None,
    jobs: int | None = None,
) -> list[Problem]:
    """Ledger checks and re-justification of every entry (`trust_problems`), plus
    (with `view`) that the view matches the ledger exactly, and that no store, ledger
    or policy directory leads out of the workspace by a link. When all is clean, the
    workspace's checkpoint moves forward to the head.

    With `since_checkpoint`, the ledger checks cover only the entries after the
    workspace's checkpoint (`resume_point`); where it cannot vouch for them, all of
    them, and the reason is appended to `notes`. `jobs`: see `chain_and_justify`."""
    from promote.view import View

    since = None
    if since_checkpoint:
        found = resume_point(ws, ledger)
        if isinstance(found, str):
            if notes is not None:
                notes.append(f"not incremental ({found}): verifying every entry")
        else:
            since = found
    problems, state, ref, justified = chain_and_justify(
        ws, ledger, ws.store, since, allow_unsigned=allow_unsigned, replay=replay, jobs=jobs
    )
    problems += trust_problems(
        ws,
        ledger,
        ws.store,
        state is not None,
        allow_unsigned=allow_unsigned,
        replay=replay,
        checkpoint=checkpoint,
        witnesses=witnesses,
        require=require,
        log_key=log_key,
        since=since,
        justified=justified,
    )
    problems += linked_dirs(ws)
    if view and state is not None and ref is not None:
        problems += View(ws).problems(state, ref)
    if not problems:
        advance_checkpoint(ws, ledger)
    return sorted(problems)
