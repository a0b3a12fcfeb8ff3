-- 0001: the head, the ledger and the pointer state of the PostgreSQL commit backend.
--
-- One commit of a promotion locks the single `promote_head` row FOR UPDATE, checks it
-- still names the base it planned from, inserts the entry into `promote_ledger`,
-- applies the entry's changes to `promote_pointers` and moves the head: one
-- transaction, so the three are never seen apart.

-- The head: exactly one row. At genesis seq is 0 and entry and state are NULL (the
-- empty pointer state); after that, entry is the hash of entry `seq` and state names
-- the pointer-state object (in the store) that entry left.
CREATE TABLE promote_head (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq          bigint  NOT NULL CHECK (seq >= 0),
    entry        text    NULL CHECK (entry ~ '^blake3:[0-9a-f]{64}$'),
    state_digest text    NULL CHECK (state_digest ~ '^blake3:[0-9a-f]{64}$'),
    state_size   bigint  NULL CHECK (state_size >= 0),
    CHECK ((seq = 0) = (entry IS NULL)),
    CHECK ((state_digest IS NULL) = (state_size IS NULL)),
    CHECK (seq > 0 OR state_digest IS NULL)
);
INSERT INTO promote_head (id, seq) VALUES (true, 0);

-- The ledger: the exact canonical bytes of each entry, as the file ledger holds them
-- in entries/<seq>.json. `hash` is BLAKE3 of `data`, computed by promote (PostgreSQL
-- has no BLAKE3); `promote ledger verify` re-hashes. `prev` must name an entry that
-- exists, so the chain cannot be cut in the database either.
CREATE TABLE promote_ledger (
    seq          bigint  PRIMARY KEY CHECK (seq >= 1),
    hash         text    NOT NULL UNIQUE CHECK (hash ~ '^blake3:[0-9a-f]{64}$'),
    prev         text    NULL REFERENCES promote_ledger (hash),
    data         bytea   NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((seq = 1) = (prev IS NULL))
);

-- Append-only: rows are never changed or removed, whoever asks.
CREATE FUNCTION promote_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'promote_ledger is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER promote_ledger_no_change
    BEFORE UPDATE OR DELETE ON promote_ledger
    FOR EACH ROW EXECUTE FUNCTION promote_ledger_append_only();
CREATE TRIGGER promote_ledger_no_truncate
    BEFORE TRUNCATE ON promote_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION promote_ledger_append_only();

-- The pointer state the head names, one row per authoritative path, so that readers
-- (promote checkout, queries) need not fetch the state object from the store.
CREATE TABLE promote_pointers (
    path   text   PRIMARY KEY,
    digest text   NOT NULL CHECK (digest ~ '^blake3:[0-9a-f]{64}$'),
    size   bigint NOT NULL CHECK (size >= 0)
);
