import hashlib
import io
import itertools
import random

import pytest

from zqnode.proofs import cid, fr32
from zqnode.proofs.commp import (
    CommP,
    CommPError,
    PayloadTooSmall,
    PiecesDoNotFit,
    Slot,
    commd,
    commp,
    piece_layout,
)
from zqnode.proofs.merkle import zero_commitment

EXAMPLE_508 = bytes([0]) * 127 + bytes([1]) * 127 + bytes([2]) * 127 + bytes([3]) * 127


# --- an independent, naive CommP: everything in memory, integer fr32, node by node ---

def naive_fr32(data: bytes) -> bytes:
    data = data + bytes(-len(data) % 127)
    out = bytearray()
    for start in range(0, len(data), 127):
        n = int.from_bytes(data[start:start + 127], "little")
        for k in range(4):
            out += ((n >> (254 * k)) & ((1 << 254) - 1)).to_bytes(32, "little")
    return bytes(out)


def naive_root(padded: bytes) -> bytes:
    size = 128
    while size < len(padded):
        size *= 2
    nodes = [padded[i:i + 32] for i in range(0, len(padded), 32)]
    nodes += [bytes(32)] * (size // 32 - len(nodes))
    while len(nodes) > 1:
        parents = []
        for left, right in zip(nodes[0::2], nodes[1::2]):
            digest = bytearray(hashlib.sha256(left + right).digest())
            digest[31] &= 0x3F
            parents.append(bytes(digest))
        nodes = parents
    return nodes[0]


def test_the_508_byte_example():
    result = commp(EXAMPLE_508)
    assert result == CommP(bytes.fromhex("496dae0cc9e265efe5a006e80626a5dc5c409e5d3155c13984caf6c8d5cfd605"),
                           508, 512)
    assert result.cid() == "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
    assert result.cid_v2() == "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"


@pytest.mark.parametrize("data, v1, v2", [
    # FRC-0069 test cases.
    (bytes(127), None, "bafkzcibcaabdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"),
    (bytes(128), None, "bafkzcibcpybwiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy"),
    (EXAMPLE_508 + bytes(508), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa",
     "bafkzcibcaac542av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa"),
    (EXAMPLE_508 + bytes(4), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa",
     "bafkzcibd7abqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4"),
    (EXAMPLE_508 + bytes(5), "baga6ea4seaqn42av3szurbbscwuu3zjssvfwbpsvbjf6y3tukvlgl2nf5rha6pa",
     "bafkzcibd64bqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4dz4"),
])
def test_frc0069_examples(data, v1, v2):
    result = commp(data)
    if v1:
        assert result.cid() == v1
    assert result.cid_v2() == v2


def test_all_zero_payload_gives_the_zero_commitment():
    assert commp(bytes(127)).commitment == zero_commitment(128)
    assert commp(bytes(2032)) == CommP(zero_commitment(2048), 2032, 2048)


@pytest.mark.parametrize("length", [65, 100, 126, 127, 128, 254, 255, 1000, 127 * 64, 127 * 64 + 5, 5000])
def test_commp_matches_the_naive_computation(length):
    data = random.Random(length).randbytes(length)
    expected = naive_root(naive_fr32(data))
    result = commp(data)
    assert result.commitment == expected
    assert result.payload_size == length
    assert result.padded_size == max(128, 1 << (len(naive_fr32(data)) - 1).bit_length())


@pytest.mark.parametrize("chunk_size", [127, 254, 127 * 8, 127 * 64])
def test_streaming_over_chunk_boundaries_equals_one_whole_buffer(chunk_size):
    rng = random.Random(chunk_size)
    for length in (65, 127 * 8 + 1, 127 * 64 - 3, 127 * 200 + 77):
        data = rng.randbytes(length)
        assert commp(data, chunk_size=chunk_size) == commp(data, chunk_size=127 * 1024)
        assert commp(data, chunk_size=chunk_size).commitment == naive_root(naive_fr32(data))


class TrickleStream:
    """A stream with only read(), handing out at most 100 bytes at a time."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def read(self, size):
        return self._data.read(min(size, 100))


def test_commp_of_paths_and_streams(tmp_path):
    data = random.Random(1).randbytes(127 * 300 + 9)
    expected = commp(data)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    assert commp(path, chunk_size=127 * 16) == expected
    assert commp(str(path)) == expected
    assert commp(io.BytesIO(data), chunk_size=127 * 32) == expected
    assert commp(TrickleStream(data), chunk_size=127 * 4) == expected
    assert commp(bytearray(data)) == expected
    assert commp(memoryview(data)) == expected


def test_sink_receives_the_padded_payload_in_order():
    data = random.Random(3).randbytes(127 * 40 + 50)
    runs = []
    result = commp(data, chunk_size=127 * 16, sink=lambda run: runs.append(bytes(run)))
    assert [len(r) for r in runs] == [128 * 16, 128 * 16, 128 * 9]
    assert b"".join(runs) == fr32.pad(data)
    assert result == commp(data)


@pytest.mark.parametrize("length", [0, 1, 64])
def test_payload_below_65_bytes_is_an_error(length):
    with pytest.raises(PayloadTooSmall, match="at least 65 payload bytes, got"):
        commp(bytes(length))
    with pytest.raises(ValueError):
        commp(io.BytesIO(bytes(length)))


@pytest.mark.parametrize("chunk_size", [0, 100, 128, 127 * 3])
def test_bad_chunk_sizes_are_rejected(chunk_size):
    with pytest.raises(CommPError, match="chunk size"):
        commp(bytes(1000), chunk_size=chunk_size)


def test_unreadable_source_is_rejected():
    with pytest.raises(CommPError, match="int"):
        commp(12345)


# --- sector layout and CommD ---

def test_layout_aligns_each_piece_to_its_size():
    assert piece_layout([128, 512], 2048) == [
        Slot(0, 128, 0), Slot(128, 128, None), Slot(256, 256, None), Slot(512, 512, 1),
        Slot(1024, 1024, None),
    ]


def test_layout_of_an_empty_and_a_full_sector():
    assert piece_layout([], 2048) == [Slot(0, 2048, None)]
    assert piece_layout([2048], 2048) == [Slot(0, 2048, 0)]


def test_layout_small_after_big():
    assert piece_layout([512, 128, 256], 2048) == [
        Slot(0, 512, 0), Slot(512, 128, 1), Slot(640, 128, None), Slot(768, 256, 2),
        Slot(1024, 1024, None),
    ]


def test_layout_tiles_the_sector():
    slots = piece_layout([128, 1024, 256, 128, 4096], 16384)
    assert slots[0].offset == 0
    for before, after in itertools.pairwise(slots):
        assert before.offset + before.size == after.offset
    assert slots[-1].offset + slots[-1].size == 16384
    assert all(slot.offset % slot.size == 0 for slot in slots)
    assert [slot.piece for slot in slots if slot.piece is not None] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("sizes", [[4096], [1024, 2048], [128, 1024, 1024], [2048, 128]])
def test_pieces_that_do_not_fit_are_an_error(sizes):
    with pytest.raises(PiecesDoNotFit, match="does not fit"):
        piece_layout(sizes, 2048)


@pytest.mark.parametrize("sizes, sector", [([100], 2048), ([128], 1000), ([64], 2048)])
def test_layout_rejects_invalid_sizes(sizes, sector):
    with pytest.raises(ValueError, match="power of two"):
        piece_layout(sizes, sector)


def test_commd_of_an_empty_sector_is_the_zero_commitment():
    assert commd([], 2048) == zero_commitment(2048)
    assert commd([], 32 << 30).hex() == "077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"


def test_commd_of_one_full_size_piece_is_its_commp():
    piece = commp(random.Random(3).randbytes(2032))
    assert commd([(piece.padded_size, piece.commitment)], 2048) == piece.commitment


def test_commd_of_one_small_piece_pads_it_with_zero_subtrees():
    piece = commp(EXAMPLE_508)
    sector = naive_fr32(EXAMPLE_508) + bytes(2048 - 512)
    assert commd([(512, piece.commitment)], 2048) == naive_root(sector)


def test_commd_with_alignment_matches_hashing_the_whole_sector():
    rng = random.Random(11)
    small, big = rng.randbytes(127), rng.randbytes(300)
    a, b = commp(small), commp(big)
    assert (a.padded_size, b.padded_size) == (128, 512)
    # Build the sector bytes by hand: small at 0, zeros, big aligned at 512, zeros.
    sector = bytearray(2048)
    sector[0:128] = naive_fr32(small)
    padded_big = naive_fr32(big)
    sector[512:512 + len(padded_big)] = padded_big
    assert commd([(128, a.commitment), (512, b.commitment)], 2048) == naive_root(bytes(sector))


def test_commd_can_be_shown_as_a_piece_cid():
    # lotus-bench's 2 KiB all-zero sector (PROOFS.md section 5).
    assert cid.piece_cid_v1(commd([], 2048)) == "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy"


def test_commd_rejects_bad_commitments():
    with pytest.raises(CommPError, match="32 bytes"):
        commd([(128, bytes(31))], 2048)


def test_commp_of_a_numpy_buffer():
    import numpy as np
    data = random.Random(2).randbytes(1000)
    assert commp(np.frombuffer(data, dtype=np.uint8)) == commp(data)
