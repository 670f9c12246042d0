"""sha254 Merkle trees and CommP on a device: the twins of proofs.merkle and proofs.commp.

Every function takes an executor (see proofs.gpu.launch) first and returns what its CPU
twin returns, byte for byte.

A tree is reduced by `sha254_subtree` launches: each block turns 2^k nodes into one, k
levels up, in shared memory, so a 2^30-leaf tree takes three or four launches. CommP
streams the payload through two slots (page-locked host buffer, device buffers, a stream
each): while the device pads and reduces one chunk, the host reads the next, and its
copy to the device overlaps the other slot's hashing. Each chunk leaves one root per
power-of-two run of leaves; the host merges them on the same stack as the CPU code.
"""
from __future__ import annotations

import os
from collections import deque

import numpy as np

from zqnode.proofs import fr32, merkle
from zqnode.proofs.commp import (
    MIN_PAYLOAD,
    CommP,
    CommPError,
    PayloadTooSmall,
    _SubtreeStack,
)
from zqnode.proofs.gpu.launch import Launch, Ptr, blocks_for, i32, u64

NODE = merkle.NODE
MODULE = "sha254"
FR32_CHUNKS_PER_BLOCK = 32   # ZQ_FR32_CHUNKS
FR32_THREADS = 128           # ZQ_FR32_THREADS
LEVEL_THREADS = 256
#: Default CommP chunk on a device: 127 MiB of payload, a 128 MiB (2^22-leaf) subtree.
GPU_CHUNK = fr32.UNPADDED_CHUNK << 20
#: The smallest chunk: one fr32 block's worth (32 * 127 bytes), so chunks stay aligned.
MIN_GPU_CHUNK = fr32.UNPADDED_CHUNK * FR32_CHUNKS_PER_BLOCK
#: Threads per subtree block at most: 2^(k-1) = 256 keeps several blocks resident per
#: multiprocessor while a block's later phases idle most of its threads.
SUBTREE_THREADS = 256
#: Share of the device's memory a tree pass may use.
MEMORY_SHARE = 0.5


def subtree_shared_bytes(k: int) -> int:
    """Dynamic shared memory of a subtree block (zq_sha_subtree_smem_words(k) words)."""
    return 4 * 8 * ((3 << (k - 1)) >> 1)


def max_subtree_levels(limits) -> int:
    """The largest k (levels per launch) the device's limits allow."""
    k = 1
    while (k < 11 and 1 << k <= min(SUBTREE_THREADS, limits.max_threads_per_block)
           and subtree_shared_bytes(k + 1) <= limits.shared_memory_per_block):
        k += 1
    return k


def _log2(n: int) -> int:
    return n.bit_length() - 1


def level_launch(src: Ptr, dst: Ptr, n_out: int) -> Launch:
    return Launch(MODULE, "sha254_level", blocks_for(n_out, LEVEL_THREADS), LEVEL_THREADS,
                  (src, dst, u64(n_out)))


def reduce_launches(src: Ptr, n: int, k_max: int, *, levels: Ptr | None = None,
                    scratch: tuple[Ptr, Ptr] | None = None, root: Ptr | None = None) -> list[Launch]:
    """Launches that reduce n (a power of two) nodes at `src` to one.

    With `levels`, every level above the input is written there, one after another
    (n - 1 nodes; the root last). Otherwise intermediate levels go to the two `scratch`
    buffers in turn (each at least n >> k nodes) and the root to `root`.
    """
    launches = []
    current, turn = src, 0
    while n > 1:
        k = min(k_max, _log2(n))
        n_out = n >> k
        if levels is not None:
            half = n // 2
            out = levels
            roots = levels.at(NODE * (2 * half - 2 * (half >> (k - 1))))
            levels = roots.at(NODE * n_out)
        else:
            out = roots = root if n_out == 1 else scratch[turn]
            turn ^= 1
        launches.append(Launch(MODULE, "sha254_subtree", n_out, 1 << (k - 1),
                               (current, out, roots, u64(n), i32(k), i32(int(levels is not None))),
                               shared=subtree_shared_bytes(k)))
        current, n = roots, n_out
    return launches


def scratch_nodes(n: int, k_max: int) -> int:
    """Nodes each root-only scratch buffer needs for reduce_launches over n nodes."""
    return max(1, n >> min(k_max, _log2(n))) if n > 1 else 1


def fr32_launch(raw: Ptr, out: Ptr, chunks: int) -> Launch:
    return Launch(MODULE, "fr32_pad", blocks_for(chunks, FR32_CHUNKS_PER_BLOCK), FR32_THREADS,
                  (raw, out, u64(chunks)))


def _run(ex, launches, stream=None) -> None:
    for launch in launches:
        ex.launch(launch, stream)


def _as_uint8(data) -> np.ndarray:
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


# --- trees -----------------------------------------------------------------------------------

def hash_level(ex, level) -> bytes:
    """The level above `level` (an even, non-zero number of 32-byte nodes); merkle.hash_level."""
    size = memoryview(level).nbytes
    if size == 0 or size % (2 * NODE):
        raise merkle.MerkleError(f"a level to hash must be a non-zero multiple of {2 * NODE} bytes, got {size}")
    src, dst = ex.alloc(size), ex.alloc(size // 2)
    try:
        ex.write(Ptr(src), _as_uint8(level))
        ex.launch(level_launch(Ptr(src), Ptr(dst), size // (2 * NODE)))
        return ex.read(Ptr(dst), size // 2).tobytes()
    finally:
        ex.free(src)
        ex.free(dst)


def _chunk_leaves(ex, n: int, bytes_per_leaf: int, chunk_leaves: int | None) -> int:
    """Leaves per device pass: given, or the largest power of two within MEMORY_SHARE."""
    if chunk_leaves is None:
        chunk_leaves = n
        while chunk_leaves > 2 and chunk_leaves * bytes_per_leaf > ex.limits.total_memory * MEMORY_SHARE:
            chunk_leaves //= 2
    if chunk_leaves < 2 or chunk_leaves & (chunk_leaves - 1) or chunk_leaves > n:
        raise merkle.MerkleError(f"chunk of {chunk_leaves} leaves must be a power of two in 2..{n}")
    return chunk_leaves


def tree_levels(ex, leaves, k_max: int | None = None, chunk_leaves: int | None = None) -> list[bytes]:
    """Every level, leaves first, the root last; merkle.tree_levels.

    Trees larger than the device go through it in subtrees of `chunk_leaves` leaves, then
    the levels above the subtree roots are built from those.
    """
    n = merkle.leaf_count(leaves)
    if n == 1:
        return [bytes(leaves)]
    k_max = k_max or max_subtree_levels(ex.limits)
    chunk = _chunk_leaves(ex, n, 2 * NODE, chunk_leaves)
    view = _as_uint8(leaves)
    parts: list[list[bytes]] = [[] for _ in range(_log2(chunk))]
    src, out = ex.alloc(chunk * NODE), ex.alloc((chunk - 1) * NODE)
    try:
        for first in range(0, n, chunk):
            ex.write(Ptr(src), view[first * NODE:(first + chunk) * NODE])
            _run(ex, reduce_launches(Ptr(src), chunk, k_max, levels=Ptr(out)))
            above = ex.read(Ptr(out), (chunk - 1) * NODE).tobytes()
            start, width = 0, chunk // 2
            for level in parts:
                level.append(above[start * NODE:(start + width) * NODE])
                start, width = start + width, width // 2
    finally:
        ex.free(src)
        ex.free(out)
    levels = [bytes(leaves)] + [b"".join(level) for level in parts]
    if chunk < n:
        levels += tree_levels(ex, levels[-1], k_max)[1:]
    return levels


def merkle_root(ex, leaves, k_max: int | None = None, chunk_leaves: int | None = None) -> bytes:
    """Root of the tree over `leaves` (32 * 2^k bytes); merkle.merkle_root."""
    n = merkle.leaf_count(leaves)
    if n == 1:
        return bytes(leaves)
    k_max = k_max or max_subtree_levels(ex.limits)
    chunk = _chunk_leaves(ex, n, NODE + NODE // 2, chunk_leaves)
    scratch_size = scratch_nodes(chunk, k_max) * NODE
    buffers = [ex.alloc(chunk * NODE), ex.alloc(scratch_size), ex.alloc(scratch_size), ex.alloc(n // chunk * NODE)]
    src, a, b, roots = buffers
    view = _as_uint8(leaves)
    try:
        for index, first in enumerate(range(0, n, chunk)):
            ex.write(Ptr(src), view[first * NODE:(first + chunk) * NODE])
            _run(ex, reduce_launches(Ptr(src), chunk, k_max, scratch=(Ptr(a), Ptr(b)), root=Ptr(roots, index * NODE)))
        top = ex.read(Ptr(roots), n // chunk * NODE).tobytes()
    finally:
        for buf in buffers:
            ex.free(buf)
    return top if chunk == n else merkle_root(ex, top, k_max)


# --- CommP ---------------------------------------------------------------------------------------

def _runs(leaf_count: int) -> list[tuple[int, int]]:
    """(first leaf, height) of the aligned power-of-two runs, largest first (push_leaves' split)."""
    runs, offset = [], 0
    while leaf_count:
        height = _log2(leaf_count)
        runs.append((offset, height))
        offset += 1 << height
        leaf_count -= 1 << height
    return runs


class _Slot:
    """One chunk in flight: its buffers and stream."""

    def __init__(self, ex, chunk_size: int, k_max: int, with_host_buffer: bool):
        leaves = fr32.padded_size(chunk_size) // NODE
        self.raw_size = chunk_size  # a multiple of 4 * 127 (chunk_size >= MIN_GPU_CHUNK)
        self.host = ex.host_buffer(self.raw_size) if with_host_buffer else None
        self.raw = ex.alloc(self.raw_size) if with_host_buffer else None
        self.padded = ex.alloc(leaves * NODE)
        scratch = scratch_nodes(leaves, k_max) * NODE
        self.scratch = (ex.alloc(scratch), ex.alloc(scratch))
        self.roots = ex.alloc(64 * NODE)
        self.host_roots = ex.host_buffer(64 * NODE)
        self.stream = ex.new_stream()
        self.heights: list[int] = []

    def free(self, ex) -> None:
        for buf in (self.raw, self.padded, *self.scratch, self.roots):
            if buf is not None:
                ex.free(buf)


def _queue_chunk(ex, slot: _Slot, raw: Ptr, nbytes: int, k_max: int) -> None:
    """Pad `nbytes` of payload at `raw` and reduce each run of leaves to a root, on slot.stream.

    The bytes past the payload up to the next multiple of 127 (then of 4) must be zero.
    """
    chunks = -(-nbytes // fr32.UNPADDED_CHUNK)
    ex.launch(fr32_launch(raw, Ptr(slot.padded), chunks), slot.stream)
    slot.heights = []
    for index, (first, height) in enumerate(_runs(4 * chunks)):
        root = Ptr(slot.roots, index * NODE)
        src = Ptr(slot.padded, first * NODE)
        if height == 0:  # not reached: runs are whole 128-byte chunks, at least 4 leaves
            raise AssertionError("a run of one leaf")
        _run(ex, reduce_launches(src, 1 << height, k_max,
                                 scratch=(Ptr(slot.scratch[0]), Ptr(slot.scratch[1])), root=root), slot.stream)
        slot.heights.append(height)
    ex.read(Ptr(slot.roots), len(slot.heights) * NODE, out=slot.host_roots[:len(slot.heights) * NODE],
            stream=slot.stream)


def _collect(ex, slot: _Slot, stack: _SubtreeStack) -> None:
    ex.synchronize(slot.stream)
    roots = slot.host_roots.tobytes()
    for index, height in enumerate(slot.heights):
        stack.push(height, roots[index * NODE:(index + 1) * NODE])
    slot.heights = []


def _check_chunk(chunk_size: int) -> None:
    try:
        fr32.check_unpadded_piece_size(chunk_size)
    except fr32.PieceSizeError:
        raise CommPError(f"chunk size must be 127 * 2^k bytes, got {chunk_size!r}") from None
    if chunk_size < MIN_GPU_CHUNK:
        raise CommPError(f"a device chunk must be at least {MIN_GPU_CHUNK} bytes, got {chunk_size}")


def _fill(reader, view) -> int:
    """Read into `view` until it is full or the source ends; the bytes read."""
    filled = 0
    while filled < len(view):
        got = reader(view[filled:])
        if not got:
            break
        filled += got
    return filled


def _buffer_reader(data):
    view = memoryview(data).cast("B")
    position = 0

    def readinto(target) -> int:
        nonlocal position
        n = min(len(target), len(view) - position)
        target[:n] = view[position:position + n]
        position += n
        return n
    return readinto


def _stream_reader(stream):
    if hasattr(stream, "readinto"):
        return stream.readinto

    def readinto(target) -> int:
        piece = stream.read(len(target))
        target[:len(piece)] = piece
        return len(piece)
    return readinto


def commp(ex, source, chunk_size: int = GPU_CHUNK, k_max: int | None = None) -> CommP:
    """CommP of a file path, a binary stream (read to its end) or bytes-like data; commp.commp.

    `chunk_size` (127 * 2^k bytes, at least 4064) is the payload per device pass.
    """
    _check_chunk(chunk_size)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            return _commp_of_reader(ex, _stream_reader(stream), chunk_size, k_max)
    if hasattr(source, "readinto") or hasattr(source, "read"):
        return _commp_of_reader(ex, _stream_reader(source), chunk_size, k_max)
    try:
        memoryview(source)
    except TypeError:
        raise CommPError(f"commp needs a path, a binary stream or bytes, got {type(source).__name__}") from None
    return _commp_of_reader(ex, _buffer_reader(source), chunk_size, k_max)


def _finish(stack: _SubtreeStack, payload: int) -> CommP:
    if payload < MIN_PAYLOAD:
        raise PayloadTooSmall(f"CommP needs at least {MIN_PAYLOAD} payload bytes, got {payload}")
    height, root = stack.root()
    padded = fr32.piece_size_for(payload)
    assert height == _log2(padded) - 5, (height, padded)
    return CommP(root, payload, padded)


def _commp_of_reader(ex, readinto, chunk_size: int, k_max: int | None) -> CommP:
    k_max = k_max or max_subtree_levels(ex.limits)
    slots = [_Slot(ex, chunk_size, k_max, with_host_buffer=True) for _ in range(2)]
    stack, payload, in_flight = _SubtreeStack(), 0, deque()
    try:
        turn = 0
        while True:
            slot = slots[turn % 2]
            turn += 1
            if len(in_flight) == 2:  # the oldest chunk used this slot: take its roots first
                _collect(ex, in_flight.popleft(), stack)
            got = _fill(readinto, memoryview(slot.host))
            if got == 0:
                break
            payload += got
            if got < chunk_size:  # the last chunk: zero-fill to whole 127-byte chunks, 4-aligned
                end = min(chunk_size, -(-got // fr32.UNPADDED_CHUNK) * fr32.UNPADDED_CHUNK + 3 & ~3)
                slot.host[got:end] = 0
            else:
                end = chunk_size
            ex.write(Ptr(slot.raw), slot.host[:end], stream=slot.stream)
            _queue_chunk(ex, slot, Ptr(slot.raw), got, k_max)
            in_flight.append(slot)
            if got < chunk_size:
                break
        while in_flight:
            _collect(ex, in_flight.popleft(), stack)
    finally:
        for slot in slots:
            slot.free(ex)
    return _finish(stack, payload)


def commp_on_device(ex, raw: Ptr, payload_size: int, chunk_size: int = GPU_CHUNK,
                    k_max: int | None = None) -> CommP:
    """CommP of `payload_size` bytes already on the device at `raw` (16-byte aligned).

    The buffer must stay readable and zero from the payload's end up to the next multiple
    of 127 bytes, then of 4.
    """
    _check_chunk(chunk_size)
    k_max = k_max or max_subtree_levels(ex.limits)
    slots = [_Slot(ex, chunk_size, k_max, with_host_buffer=False) for _ in range(2)]
    stack, in_flight = _SubtreeStack(), deque()
    try:
        for turn, offset in enumerate(range(0, payload_size, chunk_size)):
            slot = slots[turn % 2]
            if len(in_flight) == 2:
                _collect(ex, in_flight.popleft(), stack)
            _queue_chunk(ex, slot, raw.at(offset), min(chunk_size, payload_size - offset), k_max)
            in_flight.append(slot)
        while in_flight:
            _collect(ex, in_flight.popleft(), stack)
    finally:
        for slot in slots:
            slot.free(ex)
    return _finish(stack, payload_size)
