"""proofs.gpu.sha254 run on the host harness: launch plans + kernel bodies vs proofs.merkle/commp."""
import io
import random

import pytest

from zqnode.proofs import commp as cpu_commp
from zqnode.proofs import merkle
from zqnode.proofs.gpu import sha254
from zqnode.proofs.gpu.launch import Limits, Ptr

RNG = random.Random(7)


def leaves(n: int) -> bytes:
    # random 32-byte words with their top bits cleared, like fr32 output (not required here)
    data = bytearray(RNG.randbytes(32 * n))
    data[31::32] = bytes(b & 0x3F for b in data[31::32])
    return bytes(data)


@pytest.mark.parametrize("k_max", [1, 2, 3, 9])
@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 512])
def test_tree_levels_match_cpu(hx, n, k_max):
    data = leaves(n)
    assert sha254.tree_levels(hx, data, k_max=k_max) == merkle.tree_levels(data)
    assert hx.live_buffers() == {}


@pytest.mark.parametrize("k_max", [2, 5, 10])
def test_merkle_root_matches_cpu(hx, k_max):
    for n in (1, 2, 16, 1024, 2048):
        data = leaves(n)
        assert sha254.merkle_root(hx, data, k_max=k_max) == merkle.merkle_root(data), n
    assert hx.live_buffers() == {}


@pytest.mark.parametrize("chunk", [2, 8, 64])
def test_trees_larger_than_the_device_go_in_chunks(hx, chunk):
    data = leaves(256)
    assert sha254.tree_levels(hx, data, k_max=3, chunk_leaves=chunk) == merkle.tree_levels(data)
    assert sha254.merkle_root(hx, data, k_max=3, chunk_leaves=chunk) == merkle.merkle_root(data)
    with pytest.raises(merkle.MerkleError, match="power of two"):
        sha254.merkle_root(hx, data, chunk_leaves=24)
    assert hx.live_buffers() == {}


def test_device_memory_decides_the_chunks(hx):
    hx.limits = hx.limits._replace(total_memory=4096)  # half of it: 32 leaves with their levels
    data = leaves(256)
    assert sha254.tree_levels(hx, data) == merkle.tree_levels(data)
    assert sha254.merkle_root(hx, data) == merkle.merkle_root(data)
    grids = [launch.grid for launch in hx.launches if launch.kernel == "sha254_subtree"]
    assert grids.count(1) > 8  # many subtrees of 32 leaves, one block each


def test_hash_level_matches_cpu_and_rejects_odd_levels(hx):
    data = leaves(300)
    assert sha254.hash_level(hx, data) == merkle.hash_level(data)
    with pytest.raises(merkle.MerkleError, match="multiple of 64"):
        sha254.hash_level(hx, data[:96])
    with pytest.raises(merkle.MerkleError):
        sha254.tree_levels(hx, data[:96])


def test_subtree_levels_follow_the_device_limits():
    h100 = Limits(1024, 48 * 1024, 132, 80 << 30)
    assert sha254.max_subtree_levels(h100) == 9  # 256 threads a block
    small = Limits(64, 48 * 1024, 1, 1 << 30)
    assert sha254.max_subtree_levels(small) == 7
    tight = Limits(1024, 3000, 1, 1 << 30)  # k = 7 needs 2^6 * 1.5 nodes * 32 B = 3072 B
    assert sha254.max_subtree_levels(tight) == 6


def test_a_big_tree_takes_few_launches(hx):
    launches = sha254.reduce_launches(Ptr("x"), 1 << 30, 9, scratch=(Ptr("a"), Ptr("b")), root=Ptr("r"))
    assert [launch.grid for launch in launches] == [1 << 21, 1 << 12, 1 << 3, 1]
    assert [launch.block for launch in launches] == [256, 256, 256, 4]


# --- CommP ---------------------------------------------------------------------------------

CHUNK = 127 * 64  # 8128 payload bytes per device pass: small, so many passes and a partial one


@pytest.mark.parametrize("size", [65, 127, 128, 508, 1000, 4064, 8128, 8129, 20000, 127 * 256 + 5])
def test_commp_of_bytes_matches_cpu(hx, size):
    payload = RNG.randbytes(size)
    got = sha254.commp(hx, payload, chunk_size=CHUNK, k_max=3)
    assert got == cpu_commp.commp(payload)
    assert hx.live_buffers() == {}


def test_commp_of_zeros_is_the_zero_commitment(hx):
    got = sha254.commp(hx, bytes(127 * 16), chunk_size=CHUNK)
    assert got.padded_size == 2048
    assert got.commitment.hex() == "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"


def test_commp_check_value_cid(hx):
    payload = b"".join(bytes([i]) * 127 for i in range(4))
    got = sha254.commp(hx, payload, chunk_size=127 * 32)
    assert got.cid() == "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
    assert got.cid_v2() == "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"


def test_commp_of_a_stream_and_a_file(hx, tmp_path):
    payload = RNG.randbytes(3 * CHUNK + 777)
    path = tmp_path / "piece"
    path.write_bytes(payload)
    expected = cpu_commp.commp(payload)
    assert sha254.commp(hx, path, chunk_size=CHUNK) == expected
    assert sha254.commp(hx, str(path), chunk_size=CHUNK) == expected
    assert sha254.commp(hx, io.BytesIO(payload), chunk_size=CHUNK) == expected

    class ReadOnly:  # a stream with read() but no readinto()
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def read(self, n):
            return self._inner.read(min(n, 1000))  # short reads too
    assert sha254.commp(hx, ReadOnly(payload), chunk_size=CHUNK) == expected


def test_commp_on_device_data(hx):
    payload = RNG.randbytes(2 * CHUNK + 300)
    raw = hx.alloc(len(payload) + 127 + 4)  # zero slack after the payload, as documented
    hx.write(Ptr(raw), payload)
    assert sha254.commp_on_device(hx, Ptr(raw), len(payload), chunk_size=CHUNK) == cpu_commp.commp(payload)


def test_commp_rejects_what_the_cpu_rejects(hx):
    with pytest.raises(cpu_commp.PayloadTooSmall):
        sha254.commp(hx, bytes(64), chunk_size=CHUNK)
    with pytest.raises(cpu_commp.PayloadTooSmall):
        sha254.commp(hx, b"", chunk_size=CHUNK)
    with pytest.raises(cpu_commp.CommPError, match="127"):
        sha254.commp(hx, bytes(100), chunk_size=1000)
    with pytest.raises(cpu_commp.CommPError, match="at least 4064"):
        sha254.commp(hx, bytes(100), chunk_size=127 * 16)
    with pytest.raises(cpu_commp.CommPError, match="path, a binary stream or bytes"):
        sha254.commp(hx, 12345, chunk_size=CHUNK)
    assert hx.live_buffers() == {}
