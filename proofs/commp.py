"""Streaming CommP, CommD of a sector from its pieces, and the pieces' sector layout.

CommP is the root of the sha254 tree over the fr32-padded payload, completed with
zero subtrees up to the next power of two (PROOFS.md section 1). The payload is read
in chunks of 127 * 2^k bytes; each chunk pads to a whole subtree whose root goes on a
stack of (height, root) that merges equal heights as it goes, so memory stays at one
chunk whatever the payload's size.
"""
import dataclasses
import os
from typing import NamedTuple

import numpy as np

from zqnode.proofs import fr32
from zqnode.proofs.cid import piece_cid_v1, piece_cid_v2
from zqnode.proofs.merkle import NODE, merkle_root, node_hash, zero_commitment_at_height

MIN_PAYLOAD = 65
# 127 * 2^13 bytes of payload pad to 1 MiB: 32768 leaves, a subtree of height 15.
DEFAULT_CHUNK = fr32.UNPADDED_CHUNK << 13


class CommPError(ValueError):
    """Input from which no CommP or CommD can be computed."""


class PayloadTooSmall(CommPError):
    """CommP is undefined below 65 payload bytes."""


class PiecesDoNotFit(CommPError):
    """Pieces that, each aligned to its own size, overflow the sector."""


@dataclasses.dataclass(frozen=True)
class CommP:
    commitment: bytes
    payload_size: int
    padded_size: int

    def cid(self) -> str:
        """Piece CID v1 (baga6ea4seaq...)."""
        return piece_cid_v1(self.commitment)

    def cid_v2(self) -> str:
        """Piece CID v2 of FRC-0069 (bafkzcib...), which also carries the payload size."""
        return piece_cid_v2(self.commitment, self.payload_size)


def _height(padded_size: int) -> int:
    return padded_size.bit_length() - 1 - 5


class _SubtreeStack:
    """Roots of complete subtrees, left to right, heights strictly decreasing."""

    def __init__(self, root=merkle_root):
        self._stack: list[tuple[int, bytes]] = []
        self._root = root          # the root of a power-of-two run of leaves

    def push(self, height: int, root: bytes) -> None:
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            root = node_hash(left, root)
            height += 1
        self._stack.append((height, root))

    def push_leaves(self, leaves) -> None:
        """Push a run of leaves that starts at a multiple of its largest power-of-two part."""
        leaves = memoryview(leaves).cast("B")
        count = leaves.nbytes // NODE
        offset = 0
        while count:
            height = count.bit_length() - 1
            end = offset + (NODE << height)
            self.push(height, self._root(leaves[offset:end]))
            offset, count = end, count - (1 << height)

    def root(self) -> tuple[int, bytes]:
        """Complete the tree on the right with zero subtrees; return (height, root)."""
        while len(self._stack) > 1:
            height, _ = self._stack[-1]
            self.push(height, zero_commitment_at_height(height))
        return self._stack[0]


def _chunks_of_buffer(data, chunk_size):
    view = memoryview(data).cast("B")
    for offset in range(0, view.nbytes, chunk_size):
        yield view[offset:offset + chunk_size]


def _chunks_of_stream(stream, chunk_size):
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    reader = getattr(stream, "readinto", None)
    while True:
        filled = 0
        while filled < chunk_size:
            if reader is not None:
                got = reader(view[filled:])
            else:
                piece = stream.read(chunk_size - filled)
                got = len(piece)
                view[filled:filled + got] = piece
            if not got:
                break
            filled += got
        if filled:
            yield view[:filled]
        if filled < chunk_size:
            return


def commp(source, chunk_size: int = DEFAULT_CHUNK, sink=None, root=None) -> CommP:
    """CommP of a file path, a binary stream (read to its end) or bytes-like data.

    `sink`, when given, is called with each run of padded bytes in order (a buffer that
    is reused afterwards, so consume it at once): add_piece writes the piece with it.
    `root`, when given, replaces merkle_root for each chunk's subtree (a backend's)."""
    try:
        fr32.check_unpadded_piece_size(chunk_size)
    except fr32.PieceSizeError:
        raise CommPError(f"chunk size must be 127 * 2^k bytes, got {chunk_size!r}") from None
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            return _commp_of_chunks(_chunks_of_stream(stream, chunk_size), chunk_size, sink, root)
    if hasattr(source, "readinto") or hasattr(source, "read"):
        return _commp_of_chunks(_chunks_of_stream(source, chunk_size), chunk_size, sink, root)
    try:
        memoryview(source)
    except TypeError:
        raise CommPError(f"commp needs a path, a binary stream or bytes, got {type(source).__name__}") from None
    return _commp_of_chunks(_chunks_of_buffer(source, chunk_size), chunk_size, sink, root)


def _commp_of_chunks(chunks, chunk_size, sink=None, root=None) -> CommP:
    stack = _SubtreeStack(root or merkle_root)
    payload = 0
    leaves = np.empty(fr32.padded_size(chunk_size), dtype=np.uint8)  # reused for every chunk
    for chunk in chunks:
        # Every chunk but the last is whole, so each starts at a multiple of the chunk's
        # subtree size and push_leaves' power-of-two runs are aligned.
        payload += chunk.nbytes
        if chunk.nbytes == chunk_size:
            padded = fr32.pad_chunks(np.frombuffer(chunk, dtype=np.uint8), out=leaves)
        else:
            padded = fr32.pad(chunk)
        if sink is not None:
            sink(padded)
        stack.push_leaves(padded)
    if payload < MIN_PAYLOAD:
        raise PayloadTooSmall(f"CommP needs at least {MIN_PAYLOAD} payload bytes, got {payload}")
    height, root = stack.root()
    padded = fr32.piece_size_for(payload)
    assert height == _height(padded), (height, padded)  # the stack built the smallest tree
    return CommP(root, payload, padded)


class Slot(NamedTuple):
    """A stretch of a sector in padded bytes: piece number `piece`, or zero filler (None)."""
    offset: int
    size: int
    piece: int | None


def piece_layout(piece_sizes: list[int], sector_size: int) -> list[Slot]:
    """Where each padded piece goes in a sector, with the zero filler slots around them.

    Each piece starts at a multiple of its own size; a gap before it, and the tail of
    the sector, are covered by the largest aligned zero pieces that fit.
    """
    fr32.check_padded_piece_size(sector_size)
    slots: list[Slot] = []
    offset = 0

    def fill_to(end: int) -> None:
        nonlocal offset
        while offset < end:
            # The largest zero piece aligned at `offset` that stays within `end`.
            size = offset & -offset if offset else 1 << (end.bit_length() - 1)
            while offset + size > end:
                size >>= 1
            slots.append(Slot(offset, size, None))
            offset += size

    for index, size in enumerate(piece_sizes):
        fr32.check_padded_piece_size(size)
        start = -(-offset // size) * size
        if start + size > sector_size:
            raise PiecesDoNotFit(f"piece {index} ({size} bytes) does not fit: aligned it would end at "
                                 f"{start + size}, past the {sector_size}-byte sector")
        fill_to(start)
        slots.append(Slot(offset, size, index))
        offset += size
    fill_to(sector_size)
    return slots


def commd(pieces: list[tuple[int, bytes]], sector_size: int) -> bytes:
    """CommD of a sector holding `pieces` as (padded size, commitment), in order."""
    for index, (_, commitment) in enumerate(pieces):
        if not isinstance(commitment, (bytes, bytearray)) or len(commitment) != NODE:
            raise CommPError(f"piece {index}: a commitment must be {NODE} bytes")
    slots = piece_layout([size for size, _ in pieces], sector_size)
    stack = _SubtreeStack()
    for slot in slots:
        height = _height(slot.size)
        if slot.piece is None:
            stack.push(height, zero_commitment_at_height(height))
        else:
            stack.push(height, bytes(pieces[slot.piece][1]))
    return stack.root()[1]
