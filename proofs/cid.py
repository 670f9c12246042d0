"""Piece, data and sealed commitment CIDs (PROOFS.md section 2; go-fil-commcid, FRC-0069).

All CIDs here are CIDv1 in base32-lower multibase ('b' prefix):
  piece CID v1 = 01 ‖ uvarint(0xf101) ‖ uvarint(0x1012) ‖ 20 ‖ CommP (or CommD)
  sealed CID   = 01 ‖ uvarint(0xf102) ‖ uvarint(0xb401) ‖ 20 ‖ CommR
  piece CID v2 = 01 ‖ uvarint(0x55) ‖ uvarint(0x1011) ‖ uvarint(len digest) ‖ digest,
                 digest = uvarint(padding) ‖ height ‖ CommP
"""
import base64
from typing import NamedTuple

from zqnode.proofs import fr32

CID_V1 = 0x01
FIL_COMMITMENT_UNSEALED = 0xF101
FIL_COMMITMENT_SEALED = 0xF102
RAW = 0x55
SHA2_256_TRUNC254_PADDED = 0x1012
POSEIDON_BLS12_381_A2_FC1 = 0xB401
FR32_SHA256_TRUNC254_PADBINTREE = 0x1011
COMMITMENT_SIZE = 32
# unsigned-varint (multiformats) allows at most 9 bytes, i.e. values below 2^63.
MAX_UVARINT = (1 << 63) - 1
# The smallest payload whose padding is below half the tree's capacity (as CommP's minimum).
MIN_V2_PAYLOAD = 65
_MIN_HEIGHT = 2    # a 128-byte piece: 4 leaves
_MAX_HEIGHT = 58   # 32 << 58 = 2^63 padded bytes


class CidError(ValueError):
    """A CID that is not what was asked for, or a commitment that cannot become one."""


class PieceCidV2(NamedTuple):
    commitment: bytes
    payload_size: int
    padded_size: int


def encode_uvarint(value: int) -> bytes:
    """Unsigned LEB128 as multiformats uses it (at most 9 bytes)."""
    if not isinstance(value, int) or not 0 <= value <= MAX_UVARINT:
        raise CidError(f"uvarint value must be an int in 0..2^63-1, got {value!r}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read one minimal uvarint at `offset`; return (value, offset after it)."""
    value = 0
    for i in range(9):
        if offset + i >= len(data):
            raise CidError("truncated uvarint")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise CidError("uvarint is not minimally encoded")
            return value, offset + i + 1
    raise CidError("uvarint longer than 9 bytes")


def base32_lower(raw: bytes) -> str:
    """RFC 4648 base32, lower case, unpadded (CIDs' and Filecoin addresses')."""
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def from_base32_lower(body: str, shown: str) -> bytes:
    """The bytes of canonical `base32_lower` text; CidError naming `shown` otherwise."""
    if not body or body != body.lower():
        raise CidError(f"not base32-lower: {shown!r}")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError:
        raise CidError(f"not valid base32: {shown!r}") from None
    if base32_lower(raw) != body:
        raise CidError(f"not canonical base32 (stray bits or length): {shown!r}")
    return raw


def cid_text(raw: bytes) -> str:
    """The base32-lower string of a binary CID."""
    return "b" + base32_lower(raw)


def cid_bytes(text: str) -> bytes:
    """The binary form of a base32-lower CID string (its multibase prefix dropped)."""
    if not isinstance(text, str) or not text.startswith("b"):
        raise CidError(f"expected a base32-lower CID starting with 'b', got {text!r}")
    return from_base32_lower(text[1:], text)


def _check_commitment(commitment) -> bytes:
    if not isinstance(commitment, (bytes, bytearray)) or len(commitment) != COMMITMENT_SIZE:
        raise CidError(f"a commitment must be {COMMITMENT_SIZE} bytes")
    return bytes(commitment)


def _commitment_cid(codec: int, multihash: int, commitment) -> str:
    commitment = _check_commitment(commitment)
    return cid_text(encode_uvarint(CID_V1) + encode_uvarint(codec) + encode_uvarint(multihash)
                      + encode_uvarint(COMMITMENT_SIZE) + commitment)


def piece_cid_v1(commitment: bytes) -> str:
    """Piece CID v1 of a CommP or CommD (baga6ea4seaq...)."""
    return _commitment_cid(FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED, commitment)


def sealed_cid(comm_r: bytes) -> str:
    """Sealed CID of a CommR (bagboea4b5abc...)."""
    return _commitment_cid(FIL_COMMITMENT_SEALED, POSEIDON_BLS12_381_A2_FC1, comm_r)


def piece_cid_v2(commitment: bytes, payload_size: int) -> str:
    """Piece CID v2 (FRC-0069) of a CommP over `payload_size` payload bytes (bafkzcib...)."""
    commitment = _check_commitment(commitment)
    max_payload = fr32.unpadded_size(32 << _MAX_HEIGHT)
    if (not isinstance(payload_size, int) or isinstance(payload_size, bool)
            or not MIN_V2_PAYLOAD <= payload_size <= max_payload):
        raise CidError(f"piece CID v2 payload size must be in {MIN_V2_PAYLOAD}..{max_payload}, got {payload_size!r}")
    # The smallest tree that holds the payload; its padding is then below half its capacity.
    padded = fr32.piece_size_for(payload_size)
    height = padded.bit_length() - 1 - 5
    capacity = fr32.unpadded_size(padded)
    digest = encode_uvarint(capacity - payload_size) + bytes([height]) + commitment
    return cid_text(encode_uvarint(CID_V1) + encode_uvarint(RAW)
                      + encode_uvarint(FR32_SHA256_TRUNC254_PADBINTREE)
                      + encode_uvarint(len(digest)) + digest)


def _parse(text: str) -> tuple[int, int, bytes]:
    """(codec, multihash code, digest) of a base32 CIDv1 string."""
    raw = cid_bytes(text)
    version, at = decode_uvarint(raw)
    if version != CID_V1:
        raise CidError(f"expected a CIDv1, got version {version}")
    codec, at = decode_uvarint(raw, at)
    code, at = decode_uvarint(raw, at)
    length, at = decode_uvarint(raw, at)
    if len(raw) - at != length:
        raise CidError(f"multihash digest length says {length} bytes, CID carries {len(raw) - at}")
    return codec, code, raw[at:]


def _expect(what: str, codec: int, code: int, want_codec: int, want_code: int) -> None:
    if codec != want_codec:
        raise CidError(f"{what}: expected codec 0x{want_codec:x}, got 0x{codec:x}")
    if code != want_code:
        raise CidError(f"{what}: expected multihash 0x{want_code:x}, got 0x{code:x}")


def _parse_v2_digest(digest: bytes) -> PieceCidV2:
    padding, at = decode_uvarint(digest)
    if len(digest) != at + 1 + COMMITMENT_SIZE:
        raise CidError(f"piece CID v2 digest must be {at + 1 + COMMITMENT_SIZE} bytes, got {len(digest)}")
    height = digest[at]
    if not _MIN_HEIGHT <= height <= _MAX_HEIGHT:
        raise CidError(f"piece CID v2 tree height must be in {_MIN_HEIGHT}..{_MAX_HEIGHT}, got {height}")
    padded = 32 << height
    capacity = fr32.unpadded_size(padded)
    # As go-fil-commcid: padding below half the capacity, i.e. the tree is the smallest
    # that holds the payload (and the payload is at least 65 bytes).
    if padding >= capacity // 2:
        raise CidError(f"piece CID v2 padding {padding} must be below half of the {capacity}-byte capacity")
    return PieceCidV2(digest[at + 1:], capacity - padding, padded)


def parse_piece_cid(text: str):
    """CommP bytes of a piece CID v1, or PieceCidV2(commitment, payload_size, padded_size) of a v2."""
    codec, code, digest = _parse(text)
    if codec == RAW:
        _expect("piece CID v2", codec, code, RAW, FR32_SHA256_TRUNC254_PADBINTREE)
        return _parse_v2_digest(digest)
    _expect("piece CID", codec, code, FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED)
    if len(digest) != COMMITMENT_SIZE:
        raise CidError(f"piece CID digest must be {COMMITMENT_SIZE} bytes, got {len(digest)}")
    return digest


def parse_sealed_cid(text: str) -> bytes:
    """CommR bytes of a sealed CID."""
    codec, code, digest = _parse(text)
    _expect("sealed CID", codec, code, FIL_COMMITMENT_SEALED, POSEIDON_BLS12_381_A2_FC1)
    if len(digest) != COMMITMENT_SIZE:
        raise CidError(f"sealed CID digest must be {COMMITMENT_SIZE} bytes, got {len(digest)}")
    return digest
