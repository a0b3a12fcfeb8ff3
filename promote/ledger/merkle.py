"""RFC 6962 Merkle trees, generic over the hash function: roots, proofs, verifiers.

The tree (RFC 6962 section 2.1, RFC 9162 section 2.1.1), for a hash function H and
a list of n leaf inputs D[0:n]:

    MTH({})       = H()                               the hash of no bytes
    MTH({d})      = H(0x00 || d)                      a leaf
    MTH(D[0:n])   = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
                    where k is the largest power of two smaller than n

The ledger uses BLAKE3 (32-byte output); the Certificate Transparency test vectors use
SHA-256, hence `TreeHasher` takes the hash function as a parameter.

Everything here works on leaf *hashes* (`TreeHasher.leaf`), computed once by the
caller. Building proofs is RFC 6962's PATH and PROOF/SUBPROOF; checking them is RFC
9162's verification algorithms (sections 2.1.3.2 and 2.1.4.2), which need nothing but
the proof, the sizes, the hashes and H: `verify_inclusion` and `verify_consistency` are
pure functions that raise `ProofError` on any mismatch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import attrs
import blake3

from cas.errors import EXIT_INTEGRITY
from promote.errors import PromoteError

__all__ = [
    "BLAKE3_TREE",
    "SHA256_TREE",
    "ProofError",
    "TreeHasher",
    "consistency_proof",
    "inclusion_proof",
    "root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


class ProofError(PromoteError):
    """A Merkle proof, a checkpoint or a signature that does not verify."""

    exit_code = EXIT_INTEGRITY


@attrs.frozen
class TreeHasher:
    """The RFC 6962 hashing scheme over one hash function `h` of `size` bytes."""

    name: str
    h: Callable[[bytes], bytes] = attrs.field(eq=False, repr=False)
    size: int

    def empty(self) -> bytes:
        """MTH({}): the root of the empty tree."""
        return self.h(b"")

    def leaf(self, data: bytes) -> bytes:
        """H(0x00 || data)."""
        return self.h(LEAF_PREFIX + data)

    def node(self, left: bytes, right: bytes) -> bytes:
        """H(0x01 || left || right)."""
        return self.h(NODE_PREFIX + left + right)


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


BLAKE3_TREE = TreeHasher("blake3", _blake3, 32)
SHA256_TREE = TreeHasher("sha256", _sha256, 32)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hasher: TreeHasher, leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over leaf hashes, for a non-empty range."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return hasher.node(_mth(hasher, leaves, lo, lo + k), _mth(hasher, leaves, lo + k, hi))


def root(hasher: TreeHasher, leaves: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes.

    Computed left to right with a stack of perfect subtrees (O(log n) memory): a
    perfect subtree of 2^j leaves merges with its left neighbour of the same size, and
    what is left at the end is folded right to left, which is exactly the RFC's split
    at the largest power of two.
    """
    if not leaves:
        return hasher.empty()
    stack: list[bytes] = []
    h, prefix = hasher.h, NODE_PREFIX  # local names: this loop runs once per leaf
    for i, leaf in enumerate(leaves, start=1):
        # i leaves so far: one merge per trailing zero bit of i
        while not i & 1:
            leaf = h(prefix + stack.pop() + leaf)
            i >>= 1
        stack.append(leaf)
    acc = stack.pop()
    while stack:
        acc = h(prefix + stack.pop() + acc)
    return acc


def inclusion_proof(hasher: TreeHasher, index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:n]): the audit path of leaf `index`, leaf to root.

    Raises:
        ValueError: `index` is not in the tree.
    """
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is not in a tree of size {n}")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    # walk down from the root, collecting siblings; the RFC lists them bottom-up
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_mth(hasher, leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(hasher, leaves, lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(hasher: TreeHasher, old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[0:n]) = SUBPROOF(old_size, D[0:n], true).

    Empty when old_size is 0 or n (nothing to prove).

    Raises:
        ValueError: old_size is negative or larger than the tree.
    """
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is not within a tree of size {n}")
    if old_size in (0, n):
        return []
    path: list[bytes] = []
    lo, hi, m, whole = 0, n, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(_mth(hasher, leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(hasher, leaves, lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        path.append(_mth(hasher, leaves, lo, hi))
    path.reverse()
    return path


# -- the verifiers: small, pure, and all a third party needs ---------------------


def _check_hash(hasher: TreeHasher, value: bytes, what: str) -> None:
    if len(value) != hasher.size:
        raise ProofError(f"{what} is {len(value)} bytes, not {hasher.size}")


def _climb(
    hasher: TreeHasher, fn: int, sn: int, path: Sequence[bytes], proof: str, sizes: str
) -> Iterator[tuple[bool, bytes]]:
    """The walk up the tree both RFC 9162 verifiers share (2.1.3.2 and 2.1.4.2): each
    hash of `path`, checked for length, and whether it is the left sibling.

    Raises:
        ProofError: a hash of the wrong length, or `path` too long or too short
            ("the <proof> is too long for the <sizes>").
    """
    for i, p in enumerate(path):
        _check_hash(hasher, p, f"proof hash {i}")
        if sn == 0:
            raise ProofError(f"the {proof} is too long for the {sizes}")
        left = bool(fn & 1) or fn == sn
        yield left, p
        if left:
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the {proof} is too short for the {sizes}")


def root_from_inclusion_proof(
    hasher: TreeHasher, index: int, size: int, leaf_hash: bytes, path: Sequence[bytes]
) -> bytes:
    """The root that `path` proves leaf `index` into, for a tree of `size` leaves.

    RFC 9162 section 2.1.3.2, steps 1 to 5 (the comparison with the root is left to
    `verify_inclusion`).

    Raises:
        ProofError: the index is out of range, or the path has the wrong length.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(hasher, leaf_hash, "the leaf hash")
    r = leaf_hash
    for left, p in _climb(hasher, index, size - 1, path, "inclusion proof", "tree size"):
        r = hasher.node(p, r) if left else hasher.node(r, p)
    return r


def verify_inclusion(
    hasher: TreeHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    path: Sequence[bytes],
    root_hash: bytes,
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves and root `root_hash`.

    Raises:
        ProofError: with the reason, if it is not.
    """
    _check_hash(hasher, root_hash, "the root")
    if root_from_inclusion_proof(hasher, index, size, leaf_hash, path) != root_hash:
        raise ProofError("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    hasher: TreeHasher,
    old_size: int,
    new_size: int,
    path: Sequence[bytes],
    old_root: bytes,
    new_root: bytes,
) -> None:
    """Check that the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 section 2.1.4.2, plus the trivial cases it leaves out: equal sizes need
    equal roots and an empty proof; an empty old tree is a prefix of every tree.

    Raises:
        ProofError: with the reason, if it is not.
    """
    _check_hash(hasher, old_root, "the old root")
    _check_hash(hasher, new_root, "the new root")
    for i, p in enumerate(path):
        _check_hash(hasher, p, f"proof hash {i}")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"old size {old_size} is not between 0 and the new size {new_size}")
    if old_size == new_size:
        if path:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("same size, different roots: the log has forked")
        return
    if old_size == 0:
        if path:
            raise ProofError("a consistency proof from the empty tree must be empty")
        if old_root != hasher.empty():
            raise ProofError("the old root is not the root of the empty tree")
        return
    if not path:
        raise ProofError("the consistency proof is empty")
    nodes = list(path)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for left, c in _climb(hasher, fn, sn, nodes[1:], "consistency proof", "sizes"):
        if left:
            fr = hasher.node(c, fr)
            sr = hasher.node(c, sr)
        else:
            sr = hasher.node(sr, c)
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the old root: the log has forked")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new root")
