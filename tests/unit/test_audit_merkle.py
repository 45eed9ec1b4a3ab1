"""RFC 9162 Merkle tree hashing of the audit log (coffer.crypto.merkle): known answers, inclusion
proofs, and the compact frontier a pruned log restarts from.

The known answers live in ``vectors/merkle.json``. The roots of sizes 0 to 8 and two audit paths
over the Certificate Transparency reference inputs are published values (RFC 6962 test data,
reproduced by every CT implementation); the other leaf hashes, node hashes and paths were
computed once by the plain recursive definitions below (``_ref_*``), which share no code with
the library. Regenerate with ``python -m tests.unit.test_audit_merkle``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.crypto.merkle import (
    EMPTY_ROOT,
    Frontier,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_root,
)

VECTOR_FILE = Path(__file__).parent / "vectors" / "merkle.json"

# The Certificate Transparency reference leaves (RFC 6962 test data).
CT_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
# Published tree heads of the first n CT inputs, n = 0..8.
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Published audit paths in the tree of all eight CT inputs.
CT_PATHS: list[dict[str, Any]] = [
    {
        "index": 0,
        "size": 8,
        "path": [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    },
    {
        "index": 5,
        "size": 8,
        "path": [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    },
]


# -- An independent reference: the RFC 9162 section 2.1 definitions, over raw entries ---------


def _ref_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ref_leaf(entry: bytes) -> bytes:
    return _ref_sha256(b"\x00" + entry)


def _ref_node(left: bytes, right: bytes) -> bytes:
    return _ref_sha256(b"\x01" + left + right)


def _ref_split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1."""
    if not entries:
        return _ref_sha256(b"")
    if len(entries) == 1:
        return _ref_leaf(entries[0])
    k = _ref_split(len(entries))
    return _ref_node(_ref_mth(entries[:k]), _ref_mth(entries[k:]))


def _ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    if len(entries) == 1:
        return []
    k = _ref_split(len(entries))
    if m < k:
        return [*_ref_path(m, entries[:k]), _ref_mth(entries[k:])]
    return [*_ref_path(m - k, entries[k:]), _ref_mth(entries[:k])]


def reference_vectors() -> dict[str, Any]:
    """The content of ``vectors/merkle.json`` as the reference definitions give it."""
    inputs = [bytes.fromhex(h) for h in CT_INPUTS]
    leaves = [_ref_leaf(entry) for entry in inputs]
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (1, 0), (7, 7)]
    return {
        "_comment": (
            "RFC 9162 Merkle tree known answers over the Certificate Transparency reference "
            "inputs. 'roots' and 'published_paths' are published RFC 6962 test values; "
            "'leaf_hashes', 'node_hashes' and 'paths' were computed by the recursive reference "
            "definitions in tests/unit/test_audit_merkle.py (python -m "
            "tests.unit.test_audit_merkle rewrites this file)."
        ),
        "inputs": CT_INPUTS,
        "leaf_hashes": [h.hex() for h in leaves],
        "node_hashes": [
            {
                "left": leaves[a].hex(),
                "right": leaves[b].hex(),
                "hash": _ref_node(leaves[a], leaves[b]).hex(),
            }
            for a, b in pairs
        ],
        "roots": [{"size": n, "root": _ref_mth(inputs[:n]).hex()} for n in range(9)],
        "published_paths": CT_PATHS,
        "paths": [
            {"index": m, "size": n, "path": [h.hex() for h in _ref_path(m, inputs[:n])]}
            for n in range(1, 9)
            for m in range(n)
        ],
    }


# (The reference stands in while the file is being regenerated; then the file test fails.)
VECTORS: dict[str, Any] = (
    json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    if VECTOR_FILE.exists()
    else reference_vectors()
)
CT_LEAVES = [leaf_hash(bytes.fromhex(h)) for h in CT_INPUTS]


def _verifies(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """True when ``proof`` leads from ``leaf`` at ``index`` to ``root`` (a malformed proof
    does not)."""
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ValueError:
        return False


# -- The vector file ----------------------------------------------------------------------------


def test_reference_reproduces_the_published_ct_values() -> None:
    """The reference definitions give the published CT roots and audit paths, so the values
    they computed for the file are trustworthy."""
    inputs = [bytes.fromhex(h) for h in CT_INPUTS]
    assert [_ref_mth(inputs[:n]).hex() for n in range(9)] == CT_ROOTS
    for case in CT_PATHS:
        got = _ref_path(case["index"], inputs[: case["size"]])
        assert [h.hex() for h in got] == case["path"]


def test_vector_file_holds_the_reference_values() -> None:
    """vectors/merkle.json is exactly what the reference definitions produce (nobody edited
    an expected value to fit the library)."""
    stored = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    assert reference_vectors() == stored
    assert [case["root"] for case in stored["roots"]] == CT_ROOTS


# -- The library against the known answers -------------------------------------------------------


def test_leaf_hashes_match_the_vectors() -> None:
    """leaf_hash(d) is SHA-256(0x00 || d) for every CT input."""
    for entry, expected in zip(VECTORS["inputs"], VECTORS["leaf_hashes"], strict=True):
        assert leaf_hash(bytes.fromhex(entry)).hex() == expected


def test_node_hashes_match_the_vectors() -> None:
    """node_hash(l, r) is SHA-256(0x01 || l || r), order-sensitive."""
    for case in VECTORS["node_hashes"]:
        got = node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"]))
        assert got.hex() == case["hash"]


@pytest.mark.parametrize("size", range(9))
def test_tree_roots_match_the_published_heads(size: int) -> None:
    """tree_root and an appended Frontier give the published root of the first n inputs."""
    expected = VECTORS["roots"][size]["root"]
    assert tree_root(CT_LEAVES[:size]).hex() == expected
    frontier = Frontier()
    frontier.extend(CT_LEAVES[:size])
    assert frontier.size == size
    assert frontier.root().hex() == expected


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    """The root of no leaves is SHA-256 of the empty string, as RFC 9162 defines."""
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert Frontier().root() == EMPTY_ROOT


@pytest.mark.parametrize(
    "case",
    VECTORS["paths"] + VECTORS["published_paths"],
    ids=lambda case: f"{case['index']}-of-{case['size']}",
)
def test_inclusion_proofs_match_the_vectors(case: dict[str, Any]) -> None:
    """inclusion_proof gives the known audit path, and that path leads to the known root."""
    index, size = case["index"], case["size"]
    proof = inclusion_proof(index, CT_LEAVES[:size])
    assert [h.hex() for h in proof] == case["path"]
    root = root_from_inclusion_proof(index, size, CT_LEAVES[index], proof)
    assert root.hex() == CT_ROOTS[size]


# -- Inclusion proofs of every shape -------------------------------------------------------------

SIZES = range(1, 21)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(b"entry-%d" % i) for i in range(n)]


@pytest.mark.parametrize("size", SIZES)
def test_every_inclusion_proof_round_trips(size: int) -> None:
    """For every index of trees of 1 to 20 leaves the proof is the reference path and leads
    back to the tree's root."""
    leaves = _leaves(size)
    entries = [b"entry-%d" % i for i in range(size)]
    root = tree_root(leaves)
    assert root == _ref_mth(entries)
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        assert proof == _ref_path(index, entries)
        assert root_from_inclusion_proof(index, size, leaves[index], proof) == root


@pytest.mark.parametrize("size", SIZES)
def test_a_proof_does_not_verify_another_leaf_or_index(size: int) -> None:
    """A proof verifies only its own leaf at its own index: another leaf, a changed leaf,
    another index or a damaged path fails."""
    leaves = _leaves(size)
    root = tree_root(leaves)
    for index in range(size):
        proof = inclusion_proof(index, leaves)
        assert _verifies(index, size, leaves[index], proof, root)
        assert not _verifies(index, size, leaf_hash(b"forged"), proof, root)
        for other in range(size):
            if other != index:
                assert not _verifies(index, size, leaves[other], proof, root)
                assert not _verifies(other, size, leaves[index], proof, root)
        for at in range(len(proof)):
            damaged = list(proof)
            damaged[at] = bytes([damaged[at][0] ^ 1]) + damaged[at][1:]
            assert not _verifies(index, size, leaves[index], damaged, root)
        assert not _verifies(index, size, leaves[index], [*proof, root], root)
        if proof:
            assert not _verifies(index, size, leaves[index], proof[:-1], root)


def test_proofs_refuse_indexes_outside_the_tree() -> None:
    """Asking for or checking a proof of an index outside the tree raises ValueError."""
    leaves = _leaves(4)
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="outside"):
            inclusion_proof(bad, leaves)
        with pytest.raises(ValueError, match="outside"):
            root_from_inclusion_proof(bad, 4, leaves[0], [])


# -- The frontier ---------------------------------------------------------------------------------

LEAF_LISTS = st.lists(st.binary(min_size=32, max_size=32), max_size=70)


@given(leaves=LEAF_LISTS, data=st.data())
def test_restored_frontier_extends_like_the_full_tree(leaves: list[bytes], data: Any) -> None:
    """A Frontier rebuilt from (size, subtrees) at any point and then extended gives the same
    root at every later size as the whole tree computed from scratch."""
    split = data.draw(st.integers(min_value=0, max_value=len(leaves)))
    first = Frontier()
    first.extend(leaves[:split])
    assert len(first.subtrees) == bin(split).count("1")
    restored = Frontier(first.size, first.subtrees)
    assert restored.root() == tree_root(leaves[:split])
    for n in range(split, len(leaves)):
        restored.append(leaves[n])
        assert restored.size == n + 1
        assert restored.root() == tree_root(leaves[: n + 1])
    assert first.root() == tree_root(leaves[:split])  # the original did not move


@given(leaves=LEAF_LISTS)
def test_frontier_copy_is_independent(leaves: list[bytes]) -> None:
    """Appending to a copy leaves the original frontier's size and root as they were."""
    original = Frontier()
    original.extend(leaves)
    before = original.root()
    clone = original.copy()
    clone.append(leaf_hash(b"more"))
    assert original.size == len(leaves)
    assert original.root() == before
    assert clone.root() == tree_root([*leaves, leaf_hash(b"more")])


@pytest.mark.parametrize(
    ("size", "subtrees"),
    [
        (1, []),
        (3, [b"\x00" * 32]),
        (2, [b"\x00" * 32, b"\x00" * 32]),
        (1, [b"\x00" * 31]),
        (-1, []),
    ],
    ids=["missing", "too-few", "too-many", "short-hash", "negative-size"],
)
def test_frontier_refuses_inconsistent_state(size: int, subtrees: list[bytes]) -> None:
    """A frontier whose subtrees do not match its size (one 32-byte hash per set bit) is
    refused with ValueError."""
    with pytest.raises(ValueError, match=r"frontier|subtree"):
        Frontier(size, subtrees)


if __name__ == "__main__":
    VECTOR_FILE.write_text(json.dumps(reference_vectors(), indent=2) + "\n", encoding="utf-8")
