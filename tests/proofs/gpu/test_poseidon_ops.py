"""proofs.gpu.poseidon on the host harness vs proofs.poseidon / proofs.ptree."""
import random

import pytest

from zqnode.proofs import poseidon, ptree
from zqnode.proofs.gpu import poseidon as gpu
from zqnode.proofs.poseidon_constants import P

RNG = random.Random(11)


def words(n: int) -> bytes:
    return b"".join(RNG.randrange(P).to_bytes(32, "little") for _ in range(n))


def labels(n: int) -> bytes:
    """sha254-like words (top two bits clear), as labels and fr32 data are."""
    data = bytearray(RNG.randbytes(32 * n))
    data[31::32] = bytes(b & 0x3F for b in data[31::32])
    return bytes(data)


def encode(data: bytes, key: bytes) -> bytes:
    return b"".join(((int.from_bytes(data[i:i + 32], "little") + int.from_bytes(key[i:i + 32], "little")) % P)
                    .to_bytes(32, "little") for i in range(0, len(data), 32))


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_hash_words_matches_cpu(hx, arity):
    data = words(arity * 5) + (P - 1).to_bytes(32, "little") * arity
    assert gpu.hash_words(hx, data, arity) == poseidon.hash_words(data, arity)
    assert gpu.hash_words(hx, b"", arity) == b""


def test_hash_many_matches_cpu_and_validates_like_it(hx):
    rows = [[RNG.randrange(P) for _ in range(8)] for _ in range(6)]
    assert gpu.hash_many(hx, rows) == poseidon.hash_many(rows)
    assert gpu.hash_many(hx, []) == []
    with pytest.raises(poseidon.FieldElementError):
        gpu.hash_many(hx, [[P, 0]])
    with pytest.raises(ValueError, match="expected arity 2"):
        gpu.hash_many(hx, [[0, 1], [2]])


def test_non_canonical_words_raise_like_the_cpu(hx):
    bad = (P - 1).to_bytes(32, "little") + P.to_bytes(32, "little")
    with pytest.raises(poseidon.FieldElementError):
        poseidon.hash_words(bad, 2)
    with pytest.raises(poseidon.FieldElementError):
        gpu.hash_words(hx, bad, 2)
    # the flag is cleared again: a good call afterwards succeeds
    good = bytes(64)
    assert gpu.hash_words(hx, good, 2) == poseidon.hash_words(good, 2)


def test_unsupported_arities(hx):
    with pytest.raises(poseidon.UnsupportedArity):
        gpu.hash_words(hx, bytes(32 * 3), 3)
    with pytest.raises(gpu.GpuArityError, match="compiled"):
        gpu.hash_words(hx, bytes(32 * 4), 4)  # the CPU has arity 4; no kernel is built for it
    with pytest.raises(ValueError, match="whole number"):
        gpu.hash_words(hx, bytes(32 * 3), 2)


@pytest.mark.parametrize("layers", [2, 11])
def test_hash_columns_matches_cpu(hx, layers):
    stack = [labels(16) for _ in range(layers)]
    assert gpu.hash_columns(hx, stack) == poseidon.hash_columns(stack)
    with pytest.raises(ValueError, match="equal"):
        gpu.hash_columns(hx, [labels(2), labels(3)])


@pytest.mark.parametrize("n, arities", [(1, 8), (8, 8), (64, 8), (512, 8), (16, (8, 2)), (128, (8, 8, 2)),
                                        (4, 2)])
def test_build_levels_matches_cpu(hx, n, arities):
    data = words(n)
    assert gpu.build_levels(hx, data, arities) == ptree.build_levels(data, arities)
    assert set(hx.live_buffers()) <= {p.buffer for p in hx.cache.values()}


def test_build_levels_rejects_like_the_cpu(hx):
    for leaves, arities in [(words(7), 8), (words(16), (8, 8)), (b"", 8), (bytes(33), 8)]:
        with pytest.raises(ptree.TreeError):
            ptree.build_levels(leaves, arities)
        with pytest.raises(ptree.TreeError):
            gpu.build_levels(hx, leaves, arities)


@pytest.mark.parametrize("chunk_leaves", [None, 8, 64])
def test_tree_c_matches_cpu(hx, chunk_leaves):
    stack = [labels(512) for _ in range(2)]
    expected = ptree.build_levels(poseidon.hash_columns(stack), 8)
    assert gpu.tree_c(hx, stack, 8, chunk_leaves=chunk_leaves) == expected


def test_tree_c_eleven_layers_compound_shape(hx):
    stack = [labels(128) for _ in range(11)]
    shape = ptree.level_arities(128, 8, 8, 2)  # (8, 8, 2): a 64 GiB-like compound tree
    expected = ptree.build_levels(poseidon.hash_columns(stack), shape)
    assert gpu.tree_c(hx, stack, shape, chunk_leaves=8) == expected


@pytest.mark.parametrize("chunk_leaves, keep_from", [(None, None), (8, None), (8, 1), (64, 0), (512, 3),
                                                     (64, 2)])
def test_tree_r_last_matches_cpu(hx, chunk_leaves, keep_from):
    data, key = labels(512), labels(512)
    replica = encode(data, key)
    levels = ptree.build_levels(replica, 8)
    got_replica, got_levels = gpu.tree_r_last(hx, data, key, 8, keep_from=keep_from, chunk_leaves=chunk_leaves)
    assert got_replica == replica
    assert got_levels == levels[3 if keep_from is None else keep_from:]


def test_tree_r_last_edge_words_and_default_rows(hx):
    # data + key wrapping past p, and words at p - 1
    data = (P - 1).to_bytes(32, "little") * 32 + labels(32)
    key = (P - 1).to_bytes(32, "little") * 32 + labels(32)
    replica = encode(data, key)
    got_replica, got_levels = gpu.tree_r_last(hx, data, key, 8)
    assert got_replica == replica
    assert gpu.default_keep_from((8, 8)) == 2  # 2 KiB: segments of all 64 leaves
    assert got_levels == ptree.build_levels(replica, 8)[2:]


def test_tree_r_last_rejects_bad_input(hx):
    with pytest.raises(ValueError, match="differ in size"):
        gpu.tree_r_last(hx, labels(64), labels(8))
    with pytest.raises(poseidon.FieldElementError):
        gpu.tree_r_last(hx, P.to_bytes(32, "little") * 8, bytes(256))
    with pytest.raises(ptree.TreeError, match="keep_from"):
        gpu.tree_r_last(hx, labels(64), labels(64), keep_from=3)
    with pytest.raises(ptree.TreeError, match="whole subtree"):
        gpu.tree_r_last(hx, labels(64), labels(64), chunk_leaves=16)


def test_synthetic_fill_matches_its_host_twin(hx):
    from zqnode.proofs.gpu.launch import Ptr
    buf = hx.alloc(32 * 100)
    hx.launch(gpu.synthetic_launch(Ptr(buf), 100, 42))
    data = hx.read(Ptr(buf), 32 * 100).tobytes()
    assert data == gpu.synthetic_words(100, 42)
    assert all(data[i] < 0x40 for i in range(31, len(data), 32))  # canonical words
