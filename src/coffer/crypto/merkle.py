"""RFC 9162 Merkle tree hashing: leaf and node hashes, a compact frontier, inclusion proofs.

``leaf_hash(d) = SHA-256(0x00 || d)`` and ``node_hash(l, r) = SHA-256(0x01 || l || r)``; the
hash of a tree of ``n`` leaves splits at the largest power of two below ``n`` (RFC 9162 2.1.1).
A :class:`Frontier` holds only the roots of the perfect subtrees that make up the first ``n``
leaves (at most 64 hashes), which is enough to append further leaves and to compute the root
of every later size: a log can forget its old leaves and still extend its signed history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Returns the RFC 9162 hash of one leaf: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Returns the RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class Frontier:
    """The compact state of a tree of ``size`` leaves: the roots of its perfect subtrees,
    largest (leftmost) first, one per set bit of ``size``."""

    __slots__ = ("_size", "_stack")

    def __init__(self, size: int = 0, subtrees: Sequence[bytes] = ()) -> None:
        """Raises ValueError when ``subtrees`` does not hold one 32-byte hash per set bit
        of ``size``."""
        if size < 0 or len(subtrees) != bin(size).count("1"):
            raise ValueError("a frontier needs one subtree hash per set bit of its size")
        if any(len(h) != HASH_BYTES for h in subtrees):
            raise ValueError("subtree hashes must be 32 bytes")
        self._size = size
        self._stack = list(subtrees)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def subtrees(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, leftmost first."""
        return tuple(self._stack)

    def append(self, leaf: bytes) -> None:
        """Appends one leaf hash (already ``leaf_hash``-ed)."""
        stack = self._stack
        h = leaf
        n = self._size
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Appends leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """Returns the tree hash of the leaves so far (SHA-256 of nothing when empty)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h

    def copy(self) -> Frontier:
        """Returns an independent copy."""
        return Frontier(self._size, self._stack)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """Returns the tree hash of ``leaves`` (leaf hashes, in order)."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Returns the RFC 9162 audit path of leaf ``index`` in the tree of ``leaves``.
    Raises ValueError when ``index`` is not a leaf of that tree."""
    if not 0 <= index < len(leaves):
        raise ValueError("index is outside the tree")
    return _path(index, leaves)


def _path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index < k:
        return [*_path(index, leaves[:k]), tree_root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), tree_root(leaves[:k])]


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Returns the root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of
    ``size`` (RFC 9162 2.1.3.2). Raises ValueError when the proof has the wrong length."""
    if not 0 <= index < size:
        raise ValueError("index is outside the tree")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ValueError("the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is too short")
    return r
