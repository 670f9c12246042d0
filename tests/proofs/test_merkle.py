import hashlib
import os

import pytest

from zqnode.proofs import merkle
from zqnode.proofs.merkle import (
    MerkleError,
    hash_level,
    inclusion_path,
    merkle_root,
    node_hash,
    sha254,
    tree_levels,
    verify_path,
    zero_commitment,
)


def test_sha254_is_sha256_with_the_last_byte_truncated():
    # SHA-256("abc") = ba7816bf...f20015ad; 0xad & 0x3f = 0x2d.
    assert sha254(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f200152d"


def test_node_hash_hashes_the_concatenation():
    left, right = bytes(range(32)), bytes(range(32, 64))
    digest = bytearray(hashlib.sha256(left + right).digest())
    digest[31] &= 0x3F
    assert node_hash(left, right) == bytes(digest)


def test_node_hash_rejects_wrong_sizes():
    with pytest.raises(MerkleError, match="32 bytes"):
        node_hash(bytes(31), bytes(32))


@pytest.mark.parametrize("size, expected", [
    (128, "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"),
    (2048, "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"),
    (32 << 30, "077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"),
])
def test_zero_commitments_match_filecoin(size, expected):
    assert zero_commitment(size).hex() == expected


def test_small_zero_commitments_are_zero_trees():
    assert zero_commitment(32) == bytes(32)
    assert zero_commitment(64) == sha254(bytes(64))
    assert zero_commitment(4096) == merkle_root(bytes(4096))


@pytest.mark.parametrize("bad", [0, 16, 48, 100, 127, -32, True])
def test_zero_commitment_rejects_sizes_that_are_not_trees(bad):
    with pytest.raises(MerkleError, match="power of two"):
        zero_commitment(bad)


@pytest.mark.parametrize("pairs", [1, 3, 1024, 1024 + 5, 2 * 1024])
def test_hash_level_matches_node_by_node_hashing(pairs):
    level = os.urandom(64 * pairs)
    expected = b"".join(node_hash(level[i:i + 32], level[i + 32:i + 64]) for i in range(0, len(level), 64))
    assert hash_level(level) == expected
    assert hash_level(bytearray(level)) == expected
    assert hash_level(memoryview(level)) == expected


@pytest.mark.parametrize("size", [0, 32, 96, 100])
def test_hash_level_rejects_odd_levels(size):
    with pytest.raises(MerkleError, match="multiple of 64"):
        hash_level(bytes(size))


def test_tree_levels_and_root():
    leaves = os.urandom(32 * 16)
    levels = tree_levels(leaves)
    assert [len(level) for level in levels] == [512, 256, 128, 64, 32]
    assert levels[0] == leaves
    assert levels[1][:32] == node_hash(leaves[:32], leaves[32:64])
    assert levels[-1] == node_hash(levels[-2][:32], levels[-2][32:])
    assert merkle_root(leaves) == levels[-1]


def test_single_leaf_tree_is_its_own_root():
    leaf = os.urandom(32)
    assert merkle_root(leaf) == leaf
    assert tree_levels(leaf) == [leaf]
    assert inclusion_path([leaf], 0) == []
    assert verify_path(leaf, leaf, 0, [])


@pytest.mark.parametrize("size", [0, 31, 96, 32 * 6])
def test_trees_need_a_power_of_two_of_leaves(size):
    with pytest.raises(MerkleError, match="power of two"):
        merkle_root(bytes(size))
    with pytest.raises(MerkleError, match="power of two"):
        tree_levels(bytes(size))


def test_every_inclusion_path_verifies():
    leaves = os.urandom(32 * 16)
    levels = tree_levels(leaves)
    root = levels[-1]
    for index in range(16):
        path = inclusion_path(levels, index)
        assert len(path) == 4
        assert path[0] == leaves[(index ^ 1) * 32:((index ^ 1) + 1) * 32]
        assert verify_path(root, leaves[index * 32:(index + 1) * 32], index, path)


def test_tampered_proofs_fail():
    leaves = os.urandom(32 * 8)
    levels = tree_levels(leaves)
    root, leaf, path = levels[-1], leaves[5 * 32:6 * 32], inclusion_path(levels, 5)
    assert verify_path(root, leaf, 5, path)
    assert not verify_path(root, leaf, 4, path)
    assert not verify_path(root, bytes(32), 5, path)
    assert not verify_path(root, leaf, 5, [path[0], bytes(32), path[2]])
    assert not verify_path(bytes(32), leaf, 5, path)


def test_malformed_proof_input_raises():
    leaves = os.urandom(32 * 8)
    levels = tree_levels(leaves)
    path = inclusion_path(levels, 1)
    with pytest.raises(MerkleError, match="index"):
        inclusion_path(levels, 8)
    with pytest.raises(MerkleError, match="index"):
        inclusion_path(levels, -1)
    with pytest.raises(MerkleError, match="does not fit"):
        verify_path(levels[-1], leaves[32:64], 8, path)
    with pytest.raises(MerkleError, match="32 bytes"):
        verify_path(levels[-1], leaves[32:63], 1, path)
    with pytest.raises(MerkleError, match="32 bytes"):
        verify_path(levels[-1], leaves[32:64], 1, [path[0][:31]] + path[1:])


def test_merkle_error_is_a_value_error():
    assert issubclass(merkle.MerkleError, ValueError)
