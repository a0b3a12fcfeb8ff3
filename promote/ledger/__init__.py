"""The ledger: hash-linked entries (`entry`), the commit backend they go through
(`backend`), its file (`files`) and PostgreSQL (`pg`) implementations, the Merkle tree
over the entries (`merkle`), checkpoints and proofs (`proofs`), and the objects the
ledger keeps alive (`roots`)."""
