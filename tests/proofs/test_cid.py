import base64
import os

import pytest

from zqnode.proofs import cid
from zqnode.proofs.cid import (
    CidError,
    PieceCidV2,
    decode_uvarint,
    encode_uvarint,
    parse_piece_cid,
    parse_sealed_cid,
    piece_cid_v1,
    piece_cid_v2,
    sealed_cid,
)
from zqnode.proofs.merkle import zero_commitment

EXAMPLE_COMMP = bytes.fromhex("496dae0cc9e265efe5a006e80626a5dc5c409e5d3155c13984caf6c8d5cfd605")
EXAMPLE_V1 = "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
EXAMPLE_V2 = "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
# lotus-bench's 2 KiB seal (PROOFS.md section 5).
BENCH_COMMR = "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"


def raw_bytes(text: str) -> bytes:
    body = text[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


def to_text(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


@pytest.mark.parametrize("value, encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"),
    (0xF101, "81e203"), (0x1012, "9220"), (0xF102, "82e203"), (0xB401, "81e802"), (0x1011, "9120"),
    ((1 << 63) - 1, "ffffffffffffffff7f"),
])
def test_uvarint(value, encoded):
    assert encode_uvarint(value).hex() == encoded
    assert decode_uvarint(bytes.fromhex(encoded) + b"\xaa") == (value, len(encoded) // 2)


@pytest.mark.parametrize("encoded, problem", [
    ("", "truncated"), ("80", "truncated"), ("8000", "minimally"),
    ("ffffffffffffffffff01", "9 bytes"),
])
def test_bad_uvarints(encoded, problem):
    with pytest.raises(CidError, match=problem):
        decode_uvarint(bytes.fromhex(encoded))


@pytest.mark.parametrize("value", [-1, 1 << 63, 1.0])
def test_uvarint_range(value):
    with pytest.raises(CidError):
        encode_uvarint(value)


def test_piece_cid_v1_of_the_example():
    text = piece_cid_v1(EXAMPLE_COMMP)
    assert text == EXAMPLE_V1
    assert raw_bytes(text) == bytes.fromhex("0181e203922020") + EXAMPLE_COMMP
    assert parse_piece_cid(text) == EXAMPLE_COMMP


def test_piece_cid_v2_of_the_example():
    text = piece_cid_v2(EXAMPLE_COMMP, 508)
    assert text == EXAMPLE_V2
    # FRC-0069's base16 form of the same CID.
    assert raw_bytes(text).hex() == "01559120220004496dae0cc9e265efe5a006e80626a5dc5c409e5d3155c13984caf6c8d5cfd605"
    assert parse_piece_cid(text) == PieceCidV2(EXAMPLE_COMMP, 508, 512)


@pytest.mark.parametrize("size, v1, v2", [
    (32 << 30, "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
     "bafkzcibcaapao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"),
    (64 << 30, "baga6ea4seaqomqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
     "bafkzcibcaap6mqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq"),
])
def test_empty_sector_sized_pieces(size, v1, v2):
    # FRC-0069 test cases: the empty 32 GiB and 64 GiB pieces.
    zero = zero_commitment(size)
    assert piece_cid_v1(zero) == v1
    assert piece_cid_v2(zero, size // 128 * 127) == v2
    assert parse_piece_cid(v2) == PieceCidV2(zero, size // 128 * 127, size)


def test_sealed_cid_round_trip():
    comm_r = parse_sealed_cid(BENCH_COMMR)
    assert raw_bytes(BENCH_COMMR)[:7] == bytes.fromhex("0182e20381e80220")[:7]
    assert raw_bytes(BENCH_COMMR) == bytes.fromhex("0182e20381e80220") + comm_r
    assert sealed_cid(comm_r) == BENCH_COMMR
    assert sealed_cid(bytes(32)).startswith("bagboea4b5abc")


def test_round_trips_of_random_commitments():
    for _ in range(20):
        commitment = os.urandom(32)
        assert parse_piece_cid(piece_cid_v1(commitment)) == commitment
        assert parse_sealed_cid(sealed_cid(commitment)) == commitment
        for payload in (65, 127, 128, 1000, 34091302912, 34091302913):
            parsed = parse_piece_cid(piece_cid_v2(commitment, payload))
            assert parsed.commitment == commitment
            assert parsed.payload_size == payload


def test_v1_and_v2_share_the_commitment():
    assert parse_piece_cid(EXAMPLE_V2).commitment == parse_piece_cid(EXAMPLE_V1)


@pytest.mark.parametrize("commitment", [bytes(31), bytes(33), "00" * 32, None])
def test_commitments_must_be_32_bytes(commitment):
    for encode in (piece_cid_v1, sealed_cid, lambda c: piece_cid_v2(c, 508)):
        with pytest.raises(CidError, match="32 bytes"):
            encode(commitment)


@pytest.mark.parametrize("payload", [-1, 0, 64, 1 << 63, True, 508.0])
def test_v2_payload_out_of_range(payload):
    with pytest.raises(CidError, match="payload size"):
        piece_cid_v2(EXAMPLE_COMMP, payload)


@pytest.mark.parametrize("text, problem", [
    ("", "starting with 'b'"),
    ("zQmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "starting with 'b'"),
    (EXAMPLE_V1.upper(), "starting with 'b'"),
    ("B" + EXAMPLE_V1[1:].upper(), "starting with 'b'"),
    ("b" + EXAMPLE_V1[1:].upper(), "base32-lower"),
    ("b", "base32-lower"),
    ("bag!6ea4seaq", "base32"),
    (EXAMPLE_V1[:-2], "length"),
    (EXAMPLE_V1 + "a", "digest length"),
    (EXAMPLE_V1[:-1] + "j", "canonical"),
    (to_text(raw_bytes(EXAMPLE_V1) + b"\x00"), "digest length"),
    (to_text(bytes.fromhex("0281e203922020") + EXAMPLE_COMMP), "CIDv1"),
    (to_text(bytes.fromhex("01711220") + EXAMPLE_COMMP), "codec"),
    (to_text(bytes.fromhex("0181e2031220") + EXAMPLE_COMMP), "multihash 0x1012"),
    (to_text(bytes.fromhex("0181e20392201f") + EXAMPLE_COMMP[:31]), "32 bytes"),
    (BENCH_COMMR, "codec 0xf101"),
    (to_text(bytes.fromhex("01559220220004") + EXAMPLE_COMMP), "multihash 0x1011"),
    (to_text(bytes.fromhex("015591202100") + EXAMPLE_COMMP), "digest must be 34"),
    (to_text(bytes.fromhex("01559120220001") + EXAMPLE_COMMP), "height"),
    (to_text(bytes.fromhex("0155912022003b") + EXAMPLE_COMMP), "height"),
    (to_text(bytes.fromhex("015591202240") + b"\x02" + EXAMPLE_COMMP), "half"),
    # FRC-0069's payload-of-0 CID: 127 bytes of padding; rejected, as go-fil-commcid does.
    ("bafkzcibcp4bdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy", "half"),
])
def test_bad_piece_cids(text, problem):
    with pytest.raises(CidError, match=problem):
        parse_piece_cid(text)


@pytest.mark.parametrize("text, problem", [
    (EXAMPLE_V1, "codec 0xf102"),
    (EXAMPLE_V2, "codec 0xf102"),
    (to_text(bytes.fromhex("0182e203922020") + EXAMPLE_COMMP), "multihash 0xb401"),
    (to_text(bytes.fromhex("0182e20381e8021f") + EXAMPLE_COMMP[:31]), "32 bytes"),
    ("notacid", "starting with 'b'"),
])
def test_bad_sealed_cids(text, problem):
    with pytest.raises(CidError, match=problem):
        parse_sealed_cid(text)


def test_cid_error_is_a_value_error():
    assert issubclass(cid.CidError, ValueError)
