"""The PostgreSQL commit backend: the ledger and the pointer state in one database.

Runners on many machines promote against one database. A commit is one transaction
(READ COMMITTED):

1. lock the single `promote_head` row (`SELECT ... FOR UPDATE`, waiting at most
   `PROMOTE_LOCK_TIMEOUT` seconds);
2. compare it with the head the promotion planned from; differ: ConflictError;
3. insert the entry, apply its changes to `promote_pointers`, move the head;
4. COMMIT, the commit point.

A second runner that planned from the same head waits on the row lock, then reads the
head the first one wrote (READ COMMITTED re-reads a row locked FOR UPDATE), and gets
ConflictError: exactly one of them wins. A runner killed before COMMIT leaves nothing;
the server rolls its transaction back.

Ledger rows hold the same canonical entry bytes as `entries/<seq>.json` of the file
ledger (as bytea), so `promote ledger export` writes files identical to the ones a
local ledger would hold, and one verifier checks both.

The schema is versioned (`promote/ledger/migrations/NNNN_*.sql`) and changed only by the
explicit `promote db migrate`; a backend refuses to work on a database whose schema is
missing, older or newer than the one it knows.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cas._crash import crashpoint
from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import EXIT_INTERNAL, ConflictError, IntegrityError
from promote.errors import PromoteError, WorkspaceError
from promote.ledger import files as _files
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import EMPTY_STATE, Entry, Head
from promote.model import State

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DatabaseError",
    "Migration",
    "PgLedger",
    "SchemaError",
    "is_pg_url",
    "migrate",
    "migrations",
    "redact",
    "schema_status",
]

#: Serializes concurrent `promote db migrate` runs (pg_advisory_xact_lock key).
MIGRATE_LOCK = 0x70726F6D6F7465  # "promote"
CONNECT_TIMEOUT = 10


class DatabaseError(PromoteError):
    """The database could not be reached, or failed a statement (exit 1)."""

    exit_code = EXIT_INTERNAL


class SchemaError(WorkspaceError):
    """The database's schema is missing, behind, ahead of, or not this promote's."""


def is_pg_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """`url` without its password, for messages."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


# -- migrations ----------------------------------------------------------------


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()


def migrations() -> list[Migration]:
    """The migrations this promote ships, in order: versions 1, 2, ... without gaps."""
    from importlib import resources  # migrations only

    found = []
    for f in resources.files("promote.ledger").joinpath("migrations").iterdir():
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", f.name)
        if m:
            found.append(Migration(int(m.group(1)), f.name, f.read_bytes()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"promote's migrations are not numbered 1..{len(found)}")
    return found


_TRACKING = b"""
CREATE TABLE IF NOT EXISTS promote_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str]] | None:
    """version -> (name, checksum) of what was applied; None when never migrated."""
    import psycopg

    try:
        with conn.transaction():
            rows = conn.execute("SELECT version, name, checksum FROM promote_migrations").fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    return {int(v): (str(n), str(c)) for v, n, c in rows}


def _check_applied(applied: dict[int, tuple[str, str]], known: list[Migration]) -> None:
    for m in known:
        got = applied.get(m.version)
        if got is not None and got[1] != m.checksum:
            raise SchemaError(
                f"migration {got[0]} applied to the database differs from this promote's"
                f" {m.name}: the schema is not one this promote knows"
            )
    newer = sorted(v for v in applied if v > len(known))
    if newer:
        raise SchemaError(
            f"the database schema is at version {max(newer)}, newer than this promote knows"
            f" ({len(known)}); upgrade promote"
        )


def schema_status(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(applied version, version this promote needs).

    Raises:
        SchemaError: the applied migrations are not a prefix of this promote's.
    """
    known = migrations()
    applied = _applied(conn) or {}
    _check_applied(applied, known)
    done = 0
    while done + 1 in applied:
        done += 1
    return done, len(known)


def migrate(url: str) -> list[str]:
    """Apply the missing migrations, all in one transaction. Returns their names.

    Concurrent runs are serialized by an advisory lock, so each migration applies
    once. DDL in PostgreSQL is transactional: a failure leaves the schema as it was.

    Raises:
        SchemaError: the database holds a schema this promote does not know.
        DatabaseError: the database is unreachable or refused a statement.
    """
    import psycopg

    known = migrations()
    conn = _connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            conn.execute(_TRACKING)
            rows = conn.execute("SELECT version, name, checksum FROM promote_migrations")
            applied = {int(v): (str(n), str(c)) for v, n, c in rows.fetchall()}
            _check_applied(applied, known)
            done = []
            for m in known:
                if m.version in applied:
                    continue
                conn.execute(m.sql)
                conn.execute(
                    "INSERT INTO promote_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
                done.append(m.name)
        return done
    except psycopg.Error as e:
        raise DatabaseError(f"{redact(url)}: migration failed: {_msg(e)}") from e
    finally:
        conn.close()


def _msg(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _connect(url: str) -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, application_name="promote"
        )
    except psycopg.Error as e:
        raise DatabaseError(
            f"cannot connect to the ledger database {redact(url)}: {_msg(e)}"
        ) from e


# -- the backend ---------------------------------------------------------------


def _head(seq: int, entry: str | None, digest: str | None, size: int | None) -> Head:
    state = EMPTY_STATE.ref() if digest is None else ObjectRef(Digest.parse(digest), int(size or 0))
    return Head(int(seq), Digest.parse(entry) if entry else None, state)


def _follows(base: Head, entries: Sequence[Entry], state: State) -> None:
    head = base
    for e in entries:
        prev = str(head.entry) if head.entry else None
        if e.seq != head.seq + 1 or e.doc["prev"] != prev:
            raise IntegrityError(f"ledger entry {e.seq} does not follow entry {head.seq}")
        if ObjectRef.from_dict(e.doc["state_before"]) != head.state:
            raise IntegrityError(f"ledger entry {e.seq}: state_before is not the head's state")
        head = e.head()
    if state.ref() != head.state:
        raise IntegrityError("the pointer state is not the one the last entry names")


class PgLedger(CommitBackend):
    """Pointer state plus ledger in PostgreSQL, with the same contract as FileLedger.

    One connection, opened on first use and checked against the schema once.
    """

    def __init__(self, url: str, lock_timeout: float | None = None) -> None:
        self.url = url
        self.location = redact(url)
        #: Seconds to wait for the head row lock; None: $PROMOTE_LOCK_TIMEOUT, read
        #: at each commit as for the file ledger's lock.
        self.lock_timeout = lock_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> PgLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection; the first call connects and checks the schema.

        Raises:
            DatabaseError: unreachable. SchemaError: not migrated (or not ours).
        """
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        conn = _connect(self.url)
        try:
            done, need = self._schema(conn)
        except BaseException:
            conn.close()
            raise
        if done == 0:
            conn.close()
            raise SchemaError(
                f"the ledger database {self.location} has no promote schema:"
                " run 'promote db migrate' first"
            )
        if done < need:
            conn.close()
            raise SchemaError(
                f"the ledger database {self.location} is at schema version {done}, this"
                f" promote needs {need}: run 'promote db migrate'"
            )
        self._conn = conn
        return conn

    def _schema(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        import psycopg

        try:
            return schema_status(conn)
        except psycopg.Error as e:
            raise DatabaseError(f"{self.location}: {_msg(e)}") from e

    def _lock_timeout(self) -> float:
        if self.lock_timeout is not None:
            return self.lock_timeout
        return float(os.environ.get("PROMOTE_LOCK_TIMEOUT", _files.LOCK_TIMEOUT))

    def _fail(self, e: Exception, doing: str) -> DatabaseError:
        return DatabaseError(f"{self.location}: {doing}: {_msg(e)}")

    # -- reading -------------------------------------------------------------

    _HEAD = (
        "SELECT h.seq, h.entry, h.state_digest, h.state_size, l.hash,"
        " (SELECT max(seq) FROM promote_ledger)"
        " FROM promote_head h LEFT JOIN promote_ledger l ON l.seq = h.seq"
    )

    def _read_head(self, conn: psycopg.Connection[Any]) -> Head:
        row = conn.execute(self._HEAD).fetchone()
        if row is None:
            raise IntegrityError(f"{self.location}: the head row is missing")
        seq, entry, digest, size, found, last = row
        head = _head(seq, entry, digest, size)
        if head.seq and found is None:
            raise IntegrityError(f"ledger head names entry {head.seq}, which is missing")
        if last is not None and last > head.seq:
            raise IntegrityError(f"the ledger holds entry {last}, past its head {head.seq}")
        return head

    def head(self) -> Head:
        import psycopg

        conn = self.connection()
        try:
            return self._read_head(conn)
        except psycopg.Error as e:
            raise self._fail(e, "reading the head") from e

    def read(self, seq: int) -> bytes:
        import psycopg

        conn = self.connection()
        try:
            row = conn.execute("SELECT data FROM promote_ledger WHERE seq = %s", (seq,)).fetchone()
        except psycopg.Error as e:
            raise self._fail(e, f"reading entry {seq}") from e
        if row is None:
            raise IntegrityError(f"ledger entry {seq} is missing")
        return bytes(row[0])

    def entries(self, start: int = 1) -> Iterator[bytes]:
        """Entries `start`..head, fetched in batches rather than one query each."""
        end = self.head().seq
        batch = 500
        for lo in range(start, end + 1, batch):
            hi = min(lo + batch - 1, end)
            rows = (
                self.connection()
                .execute(
                    "SELECT seq, data FROM promote_ledger WHERE seq BETWEEN %s AND %s ORDER BY seq",
                    (lo, hi),
                )
                .fetchall()
            )
            for want, (seq, data) in enumerate(rows, lo):
                if seq != want:
                    raise IntegrityError(f"ledger entry {want} is missing")
                yield bytes(data)
            if len(rows) != hi - lo + 1:
                raise IntegrityError(f"ledger entry {lo + len(rows)} is missing")

    def snapshot(self) -> tuple[Head, State]:
        """The head and the pointer rows, read in one consistent snapshot.

        Raises:
            IntegrityError: the pointer rows are not the state the head names.
        """
        import psycopg

        conn = self.connection()
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                head = self._read_head(conn)
                rows = conn.execute("SELECT path, digest, size FROM promote_pointers").fetchall()
        except psycopg.Error as e:
            raise self._fail(e, "reading the pointer state") from e
        state = State({p: ObjectRef(Digest.parse(d), int(s)) for p, d, s in rows})
        if state.ref() != head.state:
            raise IntegrityError(
                f"{self.location}: the pointer rows are not the state the head names"
                f" ({head.state.digest})"
            )
        return head, state

    def state(self, store: ObjectStore) -> State:
        """The current pointer state: the rows, checked against the stored object."""
        head, state = self.snapshot()
        if load_state(store, head.state) != state:
            raise IntegrityError(f"pointer state {head.state.digest}: differs from the rows")
        return state

    # -- writing -------------------------------------------------------------

    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        return self.append(base, [entry], state)

    def append(self, base: Head, entries: Sequence[Entry], state: State) -> Head:
        """Append `entries` (consecutive, after `base`) and move to `state`, atomically.

        `commit` is this with one entry; `promote ledger push` appends many.

        Raises:
            ConflictError: the head is no longer `base`, or its lock was held too long.
            IntegrityError: `entries` do not chain from `base` to `state`.
            DatabaseError: the database failed; when that happens at COMMIT, whether
                the commit happened is unknown: `promote ledger verify` tells.
        """
        import psycopg

        _follows(base, entries, state)
        if not entries:
            return base
        conn = self.connection()
        new = entries[-1].head()
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (f"{max(1, int(self._lock_timeout() * 1000))}ms",),
                )
                conn.execute("SELECT 1 FROM promote_head FOR UPDATE")
                # read the head again while holding its lock: someone may have committed
                # meanwhile. A new statement, so a new snapshot (READ COMMITTED) that
                # sees their entry row too, not only the head row the lock re-read.
                current = self._read_head(conn)
                if current != base:
                    raise ConflictError(
                        f"the ledger moved: head is now entry {current.seq}"
                        f" ({current.entry}), not {base.seq}; rebuild the capsule and retry"
                    )
                with conn.cursor() as cur:
                    for e in entries:
                        cur.execute(
                            "INSERT INTO promote_ledger (seq, hash, prev, data)"
                            " VALUES (%s, %s, %s, %s)",
                            (e.seq, str(e.hash), e.doc["prev"], e.data),
                        )
                        gone = [(c.path,) for c in e.changes if c.after is None]
                        moved = [
                            (c.path, str(c.after.digest), c.after.size)
                            for c in e.changes
                            if c.after is not None
                        ]
                        if gone:
                            cur.executemany("DELETE FROM promote_pointers WHERE path = %s", gone)
                        if moved:
                            cur.executemany(
                                "INSERT INTO promote_pointers (path, digest, size)"
                                " VALUES (%s, %s, %s) ON CONFLICT (path) DO UPDATE"
                                " SET digest = EXCLUDED.digest, size = EXCLUDED.size",
                                moved,
                            )
                    cur.execute(
                        "UPDATE promote_head SET seq = %s, entry = %s, state_digest = %s,"
                        " state_size = %s",
                        (new.seq, str(new.entry), str(new.state.digest), new.state.size),
                    )
                crashpoint("commit.before")
            # the transaction block committed on leaving it: THE commit point
            crashpoint("commit.after")
        except psycopg.errors.LockNotAvailable:
            raise ConflictError(
                f"the ledger lock is held by another runner ({self.location}); retry later"
            ) from None
        except (psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure):
            raise ConflictError(
                f"ledger entry {entries[0].seq} was written by another runner first"
            ) from None
        except psycopg.Error as e:
            raise self._fail(
                e, "committing (if the connection dropped at COMMIT, check the head)"
            ) from e
        return new
