"""The Merkle tree against the RFC 6962 test vectors (SHA-256), and against itself.

The vectors are the Certificate Transparency ones: eight leaves, the roots of the
trees of 1 to 8 of them, and some inclusion and consistency proofs. They are data
published with the CT implementations (for instance transparency-dev/merkle,
proof/verify_test.go and rfc6962/rfc6962_test.go).
"""

from __future__ import annotations

import hashlib

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from promote.ledger.merkle import (
    BLAKE3_TREE,
    SHA256_TREE,
    ProofError,
    TreeHasher,
    consistency_proof,
    inclusion_proof,
    root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

H = SHA256_TREE


def dh(text: str) -> bytes:
    return bytes.fromhex(text)


LEAVES = [
    dh(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    dh(x)
    for x in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
EMPTY_ROOT = dh("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
SOME_HASH = dh("abacaba000000000000000000000000000000000000000000060061e00123456")

# (leaf number, 1-based; tree size; audit path)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

LEAF_HASHES = [H.leaf(d) for d in LEAVES]


def test_hasher_vectors() -> None:
    assert H.empty() == EMPTY_ROOT
    assert H.leaf(b"") == dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert H.leaf(b"L123456") == dh(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert H.node(b"N123", b"N456") == dh(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("n", range(1, 9))
def test_roots(n: int) -> None:
    assert root(H, LEAF_HASHES[:n]) == ROOTS[n - 1]


def test_empty_root() -> None:
    assert root(H, []) == EMPTY_ROOT
    assert root(BLAKE3_TREE, []) == blake3.blake3(b"").digest()


@pytest.mark.parametrize(("leaf", "size", "path"), INCLUSION, ids=lambda v: str(v)[:8])
def test_inclusion_vectors(leaf: int, size: int, path: list[str]) -> None:
    proof = [dh(p) for p in path]
    assert inclusion_proof(H, leaf - 1, LEAF_HASHES[:size]) == proof
    verify_inclusion(H, leaf - 1, size, LEAF_HASHES[leaf - 1], proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY, ids=lambda v: str(v)[:8])
def test_consistency_vectors(old: int, new: int, path: list[str]) -> None:
    proof = [dh(p) for p in path]
    assert consistency_proof(H, old, LEAF_HASHES[:new]) == proof
    verify_consistency(H, old, new, proof, ROOTS[old - 1], ROOTS[new - 1])


def _flip(b: bytes, mask: int) -> bytes:
    return bytes([b[0] ^ mask]) + b[1:]


def _inclusion_probes(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """Every way the CT verifier tests say a good inclusion proof can be spoilt."""
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root_hash),
        ("index + 1", index + 1, size, leaf, proof, root_hash),
        ("index ^ 2", index ^ 2, size, leaf, proof, root_hash),
        ("size * 2", index, size * 2, leaf, proof, root_hash),
        ("size // 2", index, size // 2, leaf, proof, root_hash),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root_hash),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root_hash),
        ("trailing root", index, size, leaf, [*proof, root_hash], root_hash),
        ("preceding garbage", index, size, leaf, [b"", *proof], root_hash),
        ("preceding root", index, size, leaf, [root_hash, *proof], root_hash),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], 8)
        probes.append((f"proof[{i}] bit 3", index, size, leaf, bad, root_hash))
    if proof:
        probes.append(("removed", index, size, leaf, proof[:-1], root_hash))
    if len(proof) > 1:
        probes.append(("inserted", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root_hash))
    return probes


@pytest.mark.parametrize(("leaf", "size", "path"), INCLUSION[1:], ids=lambda v: str(v)[:8])
def test_inclusion_rejects_corruptions(leaf: int, size: int, path: list[str]) -> None:
    proof = [dh(p) for p in path]
    index = leaf - 1
    accepted = []
    for desc, i, n, lh, pr, rt in _inclusion_probes(
        index, size, proof, ROOTS[size - 1], LEAF_HASHES[index]
    ):
        try:
            verify_inclusion(H, i, n, lh, pr, rt)
        except ProofError:
            continue
        accepted.append(desc)
    assert accepted == []


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY[1:], ids=lambda v: str(v)[:8])
def test_consistency_rejects_corruptions(old: int, new: int, path: list[str]) -> None:
    proof = [dh(p) for p in path]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new // 2", old, new // 2, r1, r2, proof),
        ("wrong old root", old, new, SOME_HASH, r2, proof),
        ("wrong new root", old, new, r1, SOME_HASH, proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing garbage", old, new, r1, r2, [*proof, b""]),
        ("trailing root1", old, new, r1, r2, [*proof, r1]),
        ("trailing root2", old, new, r1, r2, [*proof, r2]),
        ("preceding garbage", old, new, r1, r2, [b"", *proof]),
        ("preceding root1", old, new, r1, r2, [r1, *proof]),
        ("preceding root2", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated", old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], 16)
        probes.append((f"proof[{i}] bit 4", old, new, r1, r2, bad))
    accepted = []
    for desc, s1, s2, a, b, pr in probes:
        try:
            verify_consistency(H, s1, s2, pr, a, b)
        except ProofError:
            continue
        accepted.append(desc)
    assert accepted == []


@pytest.mark.parametrize(
    ("old", "new", "r1", "r2", "proof", "ok"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 1, EMPTY_ROOT, ROOTS[0], [], True),
        (1, 1, ROOTS[0], ROOTS[0], [], True),
        (1, 1, ROOTS[0], ROOTS[1], [], False),  # same size, different roots: a fork
        (1, 0, ROOTS[0], EMPTY_ROOT, [], False),  # back in time
        (2, 1, ROOTS[1], ROOTS[0], [], False),
        (1, 2, ROOTS[0], ROOTS[1], [], False),  # an empty proof proves nothing
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # non-empty trivial proofs
        (0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT], False),
        (1, 1, ROOTS[0], ROOTS[0], [EMPTY_ROOT], False),
        (0, 1, SOME_HASH, ROOTS[0], [], False),  # the old tree is not empty
    ],
)
def test_consistency_trivial_cases(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(H, old, new, proof, r1, r2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(H, old, new, proof, r1, r2)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 3)])
def test_inclusion_out_of_range(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        root_from_inclusion_proof(H, index, size, SOME_HASH, [])
    with pytest.raises(ValueError):
        inclusion_proof(H, index, LEAF_HASHES[:size])


def test_single_leaf_tree() -> None:
    leaf = H.leaf(b"data")
    verify_inclusion(H, 0, 1, leaf, [], leaf)
    for lh, rt in [(leaf, b""), (b"", leaf), (b"", b"")]:
        with pytest.raises(ProofError):
            verify_inclusion(H, 0, 1, lh, [], rt)


# -- beyond the vectors: every proof of every small tree, both hashes -------------------


def _naive_mth(h: TreeHasher, leaves: list[bytes]) -> bytes:
    """RFC 6962's MTH, written as the RFC states it (independent of the module's code)."""
    if not leaves:
        return h.h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return h.h(b"\x01" + _naive_mth(h, leaves[:k]) + _naive_mth(h, leaves[k:]))


@pytest.mark.parametrize("h", [SHA256_TREE, BLAKE3_TREE], ids=lambda h: h.name)
def test_every_proof_of_small_trees(h: TreeHasher) -> None:
    for n in range(0, 40):
        leaves = [h.leaf(i.to_bytes(2, "big")) for i in range(n)]
        r = root(h, leaves)
        assert r == _naive_mth(h, leaves)
        for i in range(n):
            verify_inclusion(h, i, n, leaves[i], inclusion_proof(h, i, leaves), r)
        for m in range(0, n + 1):
            old = root(h, leaves[:m])
            verify_consistency(h, m, n, consistency_proof(h, m, leaves), old, r)


def test_blake3_domain_separation() -> None:
    data = bytes(range(32))
    assert BLAKE3_TREE.leaf(data) == blake3.blake3(b"\x00" + data).digest()
    assert BLAKE3_TREE.node(data, data) == blake3.blake3(b"\x01" + data + data).digest()
    assert SHA256_TREE.leaf(data) == hashlib.sha256(b"\x00" + data).digest()
    # a node is never a leaf of its children's concatenation
    assert BLAKE3_TREE.node(data, data) != BLAKE3_TREE.leaf(data + data)


# Our own vectors, also printed in the protocol document for reimplementers: the
# BLAKE3 tree over the eight CT leaf inputs.
BLAKE3_ROOTS = {
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    2: "d35bd1e16b877c48d056182ad83ae459a44ae2a0c42497d73048b521b661d966",
    3: "5969a72267bd42acf0b2f4d0749032d41a434c8c2d3d7969d4c5a22a1f78304d",
    5: "4cb64056def39595286034a932fbb340cffda1338e639f6eaec0d9f875ef59a7",
    8: "eed80dc82a14685b1a6607764e4c253418c4279033e89c0c6ddd7fd1717bede7",
}
BLAKE3_INCLUSION_6_OF_8 = [
    "88880e8209cb0b3de4bc379905ceec53eb64c42e7bcbe26bac685549eb397624",
    "d607abd5bfd93555b252d5c3a967aed96db31c2f6b4c9cc223ccf8b3e43a619b",
    "d74b65d2a8d18d4e9c7e46d6b40e1844705cf36532ac15d205bd3fca5d2bfa58",
]
BLAKE3_CONSISTENCY_3_TO_7 = [
    "af35b4bbaa746c77cbfb5f3e4badd404be07dfbdb84fd40c73823d2cc7e1b054",
    "b7e7f6fca824a83abf0bc88dd1ee62de9e44a5662e88e9e4516df4325fbaed8e",
    "d35bd1e16b877c48d056182ad83ae459a44ae2a0c42497d73048b521b661d966",
    "28ee5abcae78ac69a88340daf96bb39683430f56cb777736179d257ffeded6e3",
]


def test_blake3_pinned_vectors() -> None:
    h = BLAKE3_TREE
    leaves = [h.leaf(d) for d in LEAVES]
    for n, want in BLAKE3_ROOTS.items():
        assert root(h, leaves[:n]).hex() == want
        assert _naive_mth(h, leaves[:n]).hex() == want
    assert BLAKE3_ROOTS[1] == blake3.blake3(b"\x00").hexdigest()
    assert [p.hex() for p in inclusion_proof(h, 5, leaves)] == BLAKE3_INCLUSION_6_OF_8
    verify_inclusion(
        h, 5, 8, leaves[5], [dh(p) for p in BLAKE3_INCLUSION_6_OF_8], dh(BLAKE3_ROOTS[8])
    )
    assert [p.hex() for p in consistency_proof(h, 3, leaves[:7])] == BLAKE3_CONSISTENCY_3_TO_7
    verify_consistency(
        h,
        3,
        7,
        [dh(p) for p in BLAKE3_CONSISTENCY_3_TO_7],
        dh(BLAKE3_ROOTS[3]),
        root(h, leaves[:7]),
    )


@given(
    n=st.integers(min_value=2, max_value=300),
    data=st.data(),
)
def test_a_forked_log_is_caught(n: int, data: st.DataObject) -> None:
    """Change any one leaf below the old size: no consistency proof from the other log holds."""
    h = BLAKE3_TREE
    m = data.draw(st.integers(min_value=1, max_value=n - 1))
    changed = data.draw(st.integers(min_value=0, max_value=m - 1))
    a = [h.leaf(i.to_bytes(2, "big")) for i in range(n)]
    b = list(a)
    b[changed] = h.leaf(b"forged")
    old_a = root(h, a[:m])
    with pytest.raises(ProofError):
        verify_consistency(h, m, n, consistency_proof(h, m, b), old_a, root(h, b))
    # and the forged leaf has no inclusion proof against the honest root
    with pytest.raises(ProofError):
        verify_inclusion(h, changed, n, b[changed], inclusion_proof(h, changed, b), root(h, a))
