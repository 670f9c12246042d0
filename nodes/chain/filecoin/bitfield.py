"""RLE+ bitfields, as go-bitfield and fvm_ipld_bitfield encode them (the Filecoin spec's
"RLE+ Bitfield"): sets of sector numbers, partitions, skipped and faulty sectors.

Bits are written least significant first. `00` (the version), then the value of the
first run, then each run's length: `1` for 1, `01` + 4 bits for 2..15, `00` + a varint
(its bytes 8 bits each) for 16 and more. Runs alternate; the last is a run of ones, and
the encoding has no trailing zero byte (so the bits after the last byte read as zeros,
and the empty set is no bytes at all).

The decoder takes only the canonical encoding (the one `encode` writes), with the rules of
fvm_ipld_bitfield's reader, the one the actors run; go-bitfield's is more lenient. It is
bounded: a peer's bitfield costs its size, never the size of the set it names.
"""
from __future__ import annotations

from typing import Iterable

MAX_ENCODED_SIZE = 32 << 10        # go-bitfield's MaxEncodedSize: actors refuse more
MAX_TOTAL = (1 << 64) - 1          # runs add up to at most u64::MAX (fvm_ipld_bitfield)
_BITS = [f"{b:08b}"[::-1] for b in range(256)]


class BitfieldError(ValueError):
    """Bytes that are not a canonical RLE+ bitfield, or a set that cannot be one."""


def runs_of(members: Iterable[int]) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive members, in order."""
    runs: list[list[int]] = []
    for n in sorted(set(members)):
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < MAX_TOTAL:
            raise BitfieldError(f"a bitfield holds ints in 0..2^64-2, not {n!r}")
        if runs and runs[-1][0] + runs[-1][1] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    return [(s, n) for s, n in runs]


def encode(members: Iterable[int]) -> bytes:
    """The RLE+ encoding of a set of non-negative ints."""
    return encode_runs(runs_of(members))


def encode_runs(runs: list[tuple[int, int]]) -> bytes:
    """The RLE+ encoding of ascending, disjoint, non-adjacent runs of ones."""
    acc, at = 0, 2                                   # version 00
    lengths, end = [], 0
    for start, length in runs:
        if length < 1 or start < end or (lengths and start == end):
            raise BitfieldError("runs must be ascending, disjoint and not adjacent")
        lengths += [start - end, length] if start > end else [length]
        end = start + length
    if not lengths:
        return b""
    if runs[0][0] == 0:                              # the first run is of ones
        acc |= 1 << at
    at += 1
    for n in lengths:
        if n == 1:
            acc |= 1 << at
            at += 1
        elif n < 16:
            acc |= (1 | n << 1) << at << 1           # 0, 1, then 4 bits: 01 nnnn
            at += 6
        else:
            at += 2                                  # 00, then the varint's bytes
            while True:
                byte = n & 0x7F
                n >>= 7
                acc |= (byte | (0x80 if n else 0)) << at
                at += 8
                if not n:
                    break
    return acc.to_bytes((at + 7) // 8, "little").rstrip(b"\0")


def decode_runs(data: bytes) -> list[tuple[int, int]]:
    """The runs of ones of a canonical RLE+ encoding, as (start, length)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitfieldError(f"a bitfield is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENCODED_SIZE:
        raise BitfieldError(f"bitfield of {len(data)} bytes is over the {MAX_ENCODED_SIZE}-byte limit")
    if not data:
        return []
    if data[-1] == 0:
        raise BitfieldError("bitfield has a trailing zero byte (not minimally encoded)")
    # the bits least significant first, as text (indexing it is O(1); shifting one big int
    # would make decoding quadratic); past the end, bits read as zeros
    bits = "".join(_BITS[b] for b in data) + "0" * 96
    last = bits.rfind("1")                           # after it, only padding

    def field(at: int, width: int) -> int:
        return int(bits[at:at + width][::-1], 2)

    if bits[0] != "0" or bits[1] != "0":
        raise BitfieldError(f"bitfield version {field(0, 2)}, only 0 is known")
    value, at = bits[2] == "1", 3
    runs, pos = [], 0
    while at <= last:                                # what is left is not all padding
        if bits[at] == "1":
            length, at = 1, at + 1
        elif bits[at + 1] == "1":
            length, at = field(at + 2, 4), at + 6
            if length < 2:
                raise BitfieldError(f"a run of {length} written as a short run (not minimal)")
        else:
            length, shift, at = 0, 0, at + 2
            while True:
                byte = field(at, 8)
                at += 8
                length |= (byte & 0x7F) << shift
                shift += 7
                if shift == 70 and byte > 1:
                    raise BitfieldError("a run's varint overflows 64 bits")
                if not byte & 0x80:
                    if byte == 0 and shift > 7:
                        raise BitfieldError("a run's varint is not minimally encoded")
                    break
            if length < 16:
                raise BitfieldError(f"a run of {length} written as a long run (not minimal)")
        if pos + length > MAX_TOTAL:
            raise BitfieldError("bitfield runs add up to more than 2^64-1")
        if value:
            runs.append((pos, length))
        pos += length
        value = not value
    if not runs or value:                            # it ended on a run of zeros
        raise BitfieldError("bitfield ends with a run of zeros (not minimally encoded)")
    return runs


def decode(data: bytes, limit: int) -> list[int]:
    """The members of a canonical RLE+ encoding; more than `limit` members is an error
    (the runs are checked before any list is made)."""
    runs = decode_runs(data)
    count = sum(n for _, n in runs)
    if count > limit:
        raise BitfieldError(f"bitfield holds {count} members, over the limit of {limit}")
    return [n for s, length in runs for n in range(s, s + length)]
