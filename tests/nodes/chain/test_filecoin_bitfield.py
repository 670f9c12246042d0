"""RLE+ bitfields against go-bitfield's and fvm_ipld_bitfield's published vectors."""
import hashlib
import pathlib

import pytest
from hypothesis import given, strategies as st

from zqnode.nodes.chain.filecoin import bitfield
from zqnode.nodes.chain.filecoin.bitfield import BitfieldError

GOLDEN = pathlib.Path(__file__).parent / "data" / "go_bitfield_golden_rle.bin"


def test_go_bitfield_decode_vector():
    # go-bitfield rle/rleplus_test.go TestDecode
    members = [0, 2, 4, 5, 6, *range(11, 28)]
    assert bitfield.encode(members) == bytes([124, 71, 34, 2])
    assert bitfield.decode(bytes([124, 71, 34, 2]), 100) == members


def test_go_bitfield_golden_loop():
    # go-bitfield TestGoldenLoop: decode then encode gives the same bytes
    golden = GOLDEN.read_bytes()
    assert hashlib.sha256(golden).hexdigest() == "08a9b4f06c838cc7dbcfa830c62a95fef893ba0c26bd339e9b434d82a694bd4d"
    runs = bitfield.decode_runs(golden)
    assert bitfield.encode_runs(runs) == golden
    members = bitfield.decode(golden, 10_000)
    assert len(members) == 9955 and members[:5] == [993, 994, 995, 996, 1099] and members[-1] == 1048395


@pytest.mark.parametrize("members, data", [
    ([1, 2, 4, 5], "a854"),                                  # fvm bit_vec_unset_vector (CBOR 42a854)
    ([1, 5, 6, 7, 10, 11, 12, 15], "d871144709"),              # go-bitfield TestBitfieldJson's set
    ([], ""), ([0], "0c"), ([1], "18"), ([0, 1], "54"), ([1, 3], "78"),
    (list(range(15)), "f401"), (list(range(16)), "0402"), ([16], "0022"),
    (list(range(1024)), "041001"), ([1_000_000], "0098b027"),
    (list(range(2**63, 2**63 + 1024)), "00101010101010101030004004"),   # go-bitfield "big numbers"
])
def test_small_vectors(members, data):
    assert bitfield.encode(members).hex() == data
    assert bitfield.decode(bytes.fromhex(data), 2000) == members


# fvm_ipld_bitfield rleplus/mod.rs `test`: its bit lists packed least significant bit first
@pytest.mark.parametrize("data, runs", [
    ("", []),
    ("1401", [(0, 8)]),
    ("943a", [(0, 4), (5, 3)]),
    ("2403", [(0, 25)]),
    ("2402", [(0, 17)]),
    ("e4ffffffffffffffff3f", [(0, 2**64 - 1)]),
    ("e4ffffffffffffffff2fffffffffffffffff7f", [(0, 2**63 - 1), (2**63, 2**63 - 1)]),   # iter_last
])
def test_fvm_accepted(data, runs):
    assert bitfield.decode_runs(bytes.fromhex(data)) == runs


@pytest.mark.parametrize("data, why", [
    ("1501", "version"), ("ff", "version"),
    ("2c04", "short run"), ("0c40", "long run"),            # trailing garbage after a zero-length run
    ("b400", "trailing zero byte"),
    ("6410e0", "not minimally encoded"),                    # varint 0x83 0x00
    ("04101010101010101050", "overflows"),                  # varint of 2^64
    ("e4ffffffffffffffff8fffffffffffffffff3f05", "add up to more than"),
    ("64e0", "long run"), ("24e0", "long run"), ("34fe", "short run"),
    ("08", "run of zeros"), ("9000", "trailing zero byte"), ("90", "run of zeros"),
    ("9402", "run of zeros"), ("2849", "run of zeros"), ("04", "run of zeros"),
    ("e0ffffffffffffffff3f20", "add up to more than"),         # go's old encoder's {2^64-1}
    ("e0ffffffffffffffffffffff", "overflows"),              # go: varint too long
])
def test_fvm_refused(data, why):
    with pytest.raises(BitfieldError, match=why):
        bitfield.decode_runs(bytes.fromhex(data))


def test_decoding_is_bounded():
    with pytest.raises(BitfieldError, match="over the 32768-byte limit"):
        bitfield.decode_runs(b"\xff" * (32 << 10 | 1))
    huge = bitfield.encode_runs([(0, 2**62)])               # a few bytes naming 2^62 sectors
    assert len(huge) < 12
    with pytest.raises(BitfieldError, match="over the limit of 25000"):
        bitfield.decode(huge, 25_000)


def test_the_largest_bitfield_decodes_run_by_run():
    # 32 KiB of alternating single runs: every bit a run, read once each
    members = list(range(0, 32 * 8 * 1024 - 64, 2))
    data = bitfield.encode(members)
    assert len(data) <= bitfield.MAX_ENCODED_SIZE
    runs = bitfield.decode_runs(data)
    assert len(runs) == len(members) and all(n == 1 for _, n in runs)


def test_bad_sets_are_refused():
    for bad in ([-1], [2**64 - 1], [True], ["3"]):
        with pytest.raises(BitfieldError):
            bitfield.encode(bad)


@given(st.sets(st.integers(0, 5000), max_size=200))
def test_round_trip(members):
    data = bitfield.encode(members)
    assert bitfield.decode(data, 5001) == sorted(members)
    assert not data or data[-1] != 0


@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_bitfield_error(data):
    try:
        runs = bitfield.decode_runs(data)
    except BitfieldError:
        return
    assert bitfield.encode_runs(runs) == data               # only the canonical form is taken
