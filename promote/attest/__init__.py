"""Signed evidence: keys, DSSE envelopes, in-toto Statements and the trust roots.

- `keys`: Ed25519 and ECDSA P-256 keys in PEM; a key id is the hex SHA-256 of the
  DER SubjectPublicKeyInfo.
- `dsse`: DSSE v1 envelopes (secure-systems-lab/dsse): PAE, strict parsing, signing,
  and verification that returns the distinct keys whose signature holds.
- `statement`: in-toto Statement v1, validated strictly; the predicate types the
  project knows.
- `trust`: `control/promote/trust.json`, the signers, their keys, roles and the
  threshold per role; `get_verification_result` says which signers signed and which
  did not, so a refusal can be explained.
- `errors`: the typed errors (exit 2 malformed, exit 3 untrusted).

The gate uses them through `promote.evidence` and `promote.pins`: see
control/promote/promote_protocol.md, "The required evidence", and
docs/adr/0010-trust-in-the-gate-and-the-ledger.md.
"""
