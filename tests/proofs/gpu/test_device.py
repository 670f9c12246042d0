"""Every kernel on a real device against the CPU code (marker `gpu`; skipped without one).

Small sizes compare everything; at 512 MiB the sha254 results are compared whole and the
Poseidon trees (whose CPU build would take hours) are checked by recomputing randomly
chosen nodes of every level from the level below on the CPU.
"""
import io
import os
import random

import numpy as np
import pytest

from zqnode.proofs import commp as cpu_commp
from zqnode.proofs import merkle, poseidon, ptree
from zqnode.proofs.poseidon_constants import P

pytestmark = pytest.mark.gpu

RNG = random.Random(2024)
MiB = 1 << 20


@pytest.fixture(scope="module")
def backend():
    from zqnode.proofs import gpu
    usable, reason = gpu.available()
    if not usable:
        pytest.skip(f"no GPU: {reason}")
    with gpu.CudaBackend() as b:
        yield b


def fr32_like(nbytes: int, seed: int) -> bytes:
    """Random 32-byte words with the top two bits clear (valid for both hashes)."""
    data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
    data[31::32] &= 0x3F
    return data.tobytes()


def spot_check(levels: list[bytes], arities, samples: int = 64) -> None:
    arities = (arities,) * (len(levels) - 1) if isinstance(arities, int) else arities
    for below, above, arity in zip(levels, levels[1:], arities):
        for i in RNG.sample(range(len(above) // 32), min(samples, len(above) // 32)):
            children = [below[(i * arity + j) * 32:(i * arity + j + 1) * 32] for j in range(arity)]
            assert poseidon.hash_bytes(children) == above[i * 32:(i + 1) * 32]


@pytest.mark.parametrize("size", [2048, MiB, 64 * MiB, 512 * MiB])
def test_merkle_root(backend, size):
    data = fr32_like(size, size)
    assert backend.merkle_root(data) == merkle.merkle_root(data)


def test_tree_levels_and_hash_level(backend):
    data = fr32_like(4 * MiB, 1)
    assert backend.tree_levels(data) == merkle.tree_levels(data)
    assert backend.hash_level(data) == merkle.hash_level(data)
    assert backend.tree_levels(data[:32]) == [data[:32]]


@pytest.mark.parametrize("size", [65, 127, 1000, 2032, 127 * 1024 + 1, 3 * MiB + 17, 127 * MiB + 5, 300 * MiB + 333])
def test_commp_odd_sizes(backend, size):
    payload = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert backend.commp(payload) == cpu_commp.commp(payload)


def test_commp_small_chunks_file_and_stream(backend, tmp_path):
    payload = os.urandom(9 * MiB + 1234)
    path = tmp_path / "piece"
    path.write_bytes(payload)
    expected = cpu_commp.commp(payload)
    assert backend.commp(path, chunk_size=127 << 13) == expected
    assert backend.commp(io.BytesIO(payload), chunk_size=127 << 12) == expected


def test_commp_check_values(backend):
    assert backend.commp(bytes(127 * 16)).commitment.hex() == \
        "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"
    payload = b"".join(bytes([i]) * 127 for i in range(4))
    assert backend.commp(payload).cid() == "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"


def test_commp_on_device(backend):
    from zqnode.proofs.gpu import sha254
    from zqnode.proofs.gpu.launch import Ptr
    ex = backend.executor
    payload = os.urandom(5 * MiB + 99)
    raw = ex.alloc(len(payload) + 256)
    try:
        ex.memset(Ptr(raw), len(payload) + 256)
        ex.write(Ptr(raw), payload)
        assert sha254.commp_on_device(ex, Ptr(raw), len(payload), chunk_size=127 << 13) == cpu_commp.commp(payload)
    finally:
        ex.free(raw)


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_hash_many(backend, arity):
    rows = [[0] * arity, [P - 1] * arity, [1] + [0] * (arity - 1)]
    rows += [[RNG.randrange(P) for _ in range(arity)] for _ in range(500)]
    assert backend.hash_many(rows) == poseidon.hash_many(rows)
    if arity == 2:
        assert backend.hash_many([[0, 1]])[0] == 0x396508d75e76a56b739e0fd902efe161a6fba9339d05a69d2e203c369a02e7ff


def test_non_canonical_input_raises(backend):
    with pytest.raises(poseidon.FieldElementError):
        backend.hash_words(P.to_bytes(32, "little") * 8, 8)


@pytest.mark.parametrize("leaves", [64, 8 ** 5])
def test_build_levels_full(backend, leaves):
    data = fr32_like(32 * leaves, leaves)
    assert backend.build_levels(data, 8) == ptree.build_levels(data, 8)


def test_build_levels_512_mib_spot_checked(backend):
    data = fr32_like(512 * MiB, 3)
    levels = backend.build_levels(data, 8)
    assert len(levels) == 9 and len(levels[-1]) == 32
    spot_check(levels, 8)


@pytest.mark.parametrize("layers, leaves", [(2, 64), (2, 8 ** 4), (11, 8 ** 3)])
def test_tree_c(backend, layers, leaves):
    stack = [fr32_like(32 * leaves, 100 + j) for j in range(layers)]
    assert backend.tree_c(stack, 8) == ptree.build_levels(poseidon.hash_columns(stack), 8)


def test_tree_c_512_mib_spot_checked(backend):
    leaves = 16 * MiB  # 2^24 leaves: a 512 MiB sector, 2 layers
    stack = [fr32_like(32 * leaves, 200 + j) for j in range(2)]
    levels = backend.tree_c(stack, 8)
    for v in RNG.sample(range(leaves), 32):
        column = [layer[v * 32:(v + 1) * 32] for layer in stack]
        assert poseidon.hash_bytes(column) == levels[0][v * 32:(v + 1) * 32]
    spot_check(levels, 8)


def _encode(data: bytes, key: bytes) -> bytes:
    return b"".join(((int.from_bytes(data[i:i + 32], "little") + int.from_bytes(key[i:i + 32], "little")) % P)
                    .to_bytes(32, "little") for i in range(0, len(data), 32))


def test_tree_r_last(backend):
    data, key = fr32_like(32 * 8 ** 4, 5), fr32_like(32 * 8 ** 4, 6)
    replica, upper = backend.tree_r_last(data, key, 8)
    assert replica == _encode(data, key)
    assert upper == ptree.build_levels(replica, 8)[3:]


def test_tree_r_last_512_mib_spot_checked(backend):
    n = 16 * MiB
    data, key = fr32_like(32 * n, 7), fr32_like(32 * n, 8)
    replica, upper = backend.tree_r_last(data, key, 8)
    for v in RNG.sample(range(n), 64):
        assert replica[v * 32:(v + 1) * 32] == _encode(data[v * 32:(v + 1) * 32], key[v * 32:(v + 1) * 32])
    assert len(upper) == 6 and len(upper[0]) == n // 512 * 32
    # the kept rows continue the tree the replica spans: rebuild 20 segments on the CPU
    for position in RNG.sample(range(n // 512), 20):
        segment = replica[position * 512 * 32:(position + 1) * 512 * 32]
        assert ptree.build_levels(segment, 8)[-1] == upper[0][position * 32:(position + 1) * 32]
    spot_check(upper, 8)


def test_partition_paths(backend):
    leaves = fr32_like(32 * 8 ** 5, 9)
    levels = ptree.build_levels(leaves, 8)
    upper = levels[3:]
    sectors = []
    for _ in range(30):
        challenges = []
        for _ in range(10):
            i = RNG.randrange(8 ** 5)
            start = i - i % 512
            challenges.append((i, leaves[start * 32:(start + 512) * 32]))
        sectors.append((upper, challenges))
    got = backend.partition_paths(sectors, 8)
    for (_, challenges), paths in zip(sectors, got):
        for (i, segment), path in zip(challenges, paths):
            assert path == ptree.path_from_upper(upper, segment, i, 8)
