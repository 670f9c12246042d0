"""Poseidon hashing, tree-c and tree-r-last on a device: twins of proofs.poseidon/ptree.

Every function takes an executor (see proofs.gpu.launch) first. Words cross to and from
the device as the CPU code stores them (32-byte little-endian, standard form); the
kernels convert to and from Montgomery form themselves. Constants are uploaded once per
executor and arity. A non-canonical input word raises FieldElementError, as on the CPU.

tree-c and tree-r-last are built in chunks of whole subtrees (`chunk_leaves`, a product
of the lowest arities): a chunk's inputs go up, its leaves are made (column hashes, or
data + key), its levels are hashed up to the chunk root, and what must be kept comes
back; the levels above the chunk roots are built last. So a sector larger than device
memory streams through it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from zqnode.proofs import poseidon as cpu
from zqnode.proofs import ptree
from zqnode.proofs.gpu.constants import poseidon_blob
from zqnode.proofs.gpu.launch import Launch, Ptr, blocks_for, u64
from zqnode.proofs.poseidon import WORD, FieldElementError, UnsupportedArity

MODULE = "poseidon"
THREADS = 128  # ZQ_POSEIDON_THREADS
#: Arities with a compiled kernel (cuda/poseidon.cu instantiates ZQ_POSEIDON_KERNEL for each).
GPU_ARITIES = (2, 8, 11)
#: Share of the device's memory one chunk of tree building may use.
MEMORY_SHARE = 0.5


class GpuArityError(UnsupportedArity):
    """An arity the CPU supports but no device kernel is compiled for."""


def _check_arity(arity: int) -> None:
    if arity not in GPU_ARITIES:
        raise GpuArityError(f"no device kernel for Poseidon arity {arity}; compiled: {GPU_ARITIES}")


def constants(ex, arity: int) -> Ptr:
    """The arity's constants on the device, uploaded on first use."""
    key = ("poseidon-constants", arity)
    if key not in ex.cache:
        blob = poseidon_blob(arity)
        buf = ex.alloc(len(blob))
        ex.write(Ptr(buf), blob)
        ex.cache[key] = Ptr(buf)
    return ex.cache[key]


def _bad_flag(ex) -> Ptr:
    key = "bad-input-flag"
    if key not in ex.cache:
        ex.cache[key] = Ptr(ex.alloc(16))
    return ex.cache[key]


def hash_launch(ex, arity: int, src: Ptr, item_stride: int, elem_stride: int, dst: Ptr, n: int) -> Launch:
    """out[i] = Poseidon of the words src[i * item_stride + j * elem_stride], j < arity."""
    _check_arity(arity)
    return Launch(MODULE, f"poseidon_{arity}", blocks_for(n, THREADS), THREADS,
                  (src, u64(item_stride), u64(elem_stride), dst, u64(n), constants(ex, arity), _bad_flag(ex)))


def _clear_bad(ex, stream=None) -> None:
    ex.memset(_bad_flag(ex), 4, stream)


def _raise_if_bad(ex, what: str, stream=None) -> None:
    flag = ex.read(_bad_flag(ex), 4, stream=stream)
    if stream is not None:
        ex.synchronize(stream)
    if flag.view("<u4")[0]:
        raise FieldElementError(f"{what}: an input word is not a canonical field element (>= p)")


def _as_uint8(data) -> np.ndarray:
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def _levels_launches(ex, src: Ptr, n: int, arities: Sequence[int], dst: Ptr) -> list[tuple[Ptr, int]]:
    """Queue the levels above n nodes at `src`, one after another at `dst`; their (ptr, count)."""
    out = []
    for arity in arities:
        n_out = n // arity
        ex.launch(hash_launch(ex, arity, src, arity, 1, dst, n_out))
        out.append((dst, n_out))
        src, dst, n = dst, dst.at(n_out * WORD), n_out
    return out


# --- hashing -------------------------------------------------------------------------------------

def hash_words(ex, data, arity: int) -> bytes:
    """Hash consecutive groups of `arity` words; cpu.hash_words."""
    cpu._compiled(arity)  # the CPU's arity check and error first
    _check_arity(arity)
    size = memoryview(data).nbytes
    if size % (WORD * arity):
        raise ValueError(f"{size} bytes is not a whole number of {arity}-word groups")
    n = size // (WORD * arity)
    if n == 0:
        return b""
    src, dst = ex.alloc(size), ex.alloc(n * WORD)
    try:
        ex.write(Ptr(src), _as_uint8(data))
        _clear_bad(ex)
        ex.launch(hash_launch(ex, arity, Ptr(src), arity, 1, Ptr(dst), n))
        _raise_if_bad(ex, "hash_words")
        return ex.read(Ptr(dst), n * WORD).tobytes()
    finally:
        ex.free(src)
        ex.free(dst)


def hash_many(ex, rows: Iterable[Sequence[int]], arity: int | None = None) -> list[int]:
    """Poseidon of each row of ints; cpu.hash_many (inputs checked on the host, as there)."""
    rows = [cpu._field_elements(r) for r in rows]
    if arity is None:
        if not rows:
            return []
        arity = len(rows[0])
    cpu._compiled(arity)
    for i, r in enumerate(rows):
        if len(r) != arity:
            raise ValueError(f"row {i} has {len(r)} elements, expected arity {arity}")
    data = b"".join(v.to_bytes(WORD, "little") for r in rows for v in r)
    digests = hash_words(ex, data, arity)
    return [int.from_bytes(digests[i:i + WORD], "little") for i in range(0, len(digests), WORD)]


def hash_columns(ex, layers: Sequence[bytes]) -> bytes:
    """Poseidon(arity = len(layers)) of each column across the layers; cpu.hash_columns."""
    arity = len(layers)
    cpu._compiled(arity)
    _check_arity(arity)
    sizes = [memoryview(layer).nbytes for layer in layers]
    size = sizes[0]
    if size % WORD or any(s != size for s in sizes):
        raise ValueError(f"layers must be equal whole numbers of {WORD}-byte words, got {sizes} bytes")
    n = size // WORD
    if n == 0:
        return b""
    src, dst = ex.alloc(arity * size), ex.alloc(size)
    try:
        for j, layer in enumerate(layers):
            ex.write(Ptr(src, j * size), _as_uint8(layer))
        _clear_bad(ex)
        ex.launch(hash_launch(ex, arity, Ptr(src), 1, n, Ptr(dst), n))
        _raise_if_bad(ex, "hash_columns")
        return ex.read(Ptr(dst), size).tobytes()
    finally:
        ex.free(src)
        ex.free(dst)


# --- trees -----------------------------------------------------------------------------------------

def build_levels(ex, leaves, arities: int | Sequence[int] = 8) -> list[bytes]:
    """All levels of the tree over `leaves`; ptree.build_levels."""
    data = ptree.leaf_bytes(leaves)
    shape = ptree.arities_for(len(data) // WORD, arities)
    for arity in shape:
        _check_arity(arity)
    return _build(ex, len(data) // WORD, shape, _leaf_source(data), keep_from=0)[1]


def _leaf_source(data: bytes):
    """A chunk source that uploads ready leaves."""
    def make_leaves(ex, first: int, count: int, dst: Ptr) -> None:
        ex.write(dst, _as_uint8(data)[first * WORD:(first + count) * WORD])
    make_leaves.inputs_per_leaf = 0
    return make_leaves


def default_chunk_leaves(ex, n: int, arities: Sequence[int], bytes_per_leaf: int) -> int:
    """The largest whole subtree (a product of the lowest arities) that fits MEMORY_SHARE."""
    budget = ex.limits.total_memory * MEMORY_SHARE
    size = 1
    for arity in arities:
        if (size * arity) * bytes_per_leaf > budget:
            break
        size *= arity
    if arities and size < arities[0]:
        raise MemoryError(f"not even one {arities[0]}-node group fits in {budget:.0f} bytes of device memory")
    return size


def _build(ex, n: int, arities: Sequence[int], make_leaves, keep_from: int, chunk_leaves: int | None = None,
           replica_out: bytearray | None = None) -> tuple[int, list[bytes]]:
    """Build the tree over n leaves made chunk by chunk; return (chunk size, levels[keep_from:]).

    make_leaves(ex, first, count, dst) writes leaves first..first+count-1 at dst (it may
    queue kernels). With `replica_out`, the leaves also come back into it.
    """
    # Bytes per leaf on the device: the inputs, the leaves, the levels above (< 1/(a-1)).
    per_leaf = (make_leaves.inputs_per_leaf + 1) * WORD + WORD
    if chunk_leaves is None:
        chunk_leaves = default_chunk_leaves(ex, n, arities, per_leaf)
    # How many of the lowest levels a chunk covers.
    m, size = 0, 1
    while m < len(arities) and size * arities[m] <= chunk_leaves:
        size *= arities[m]
        m += 1
    if size != chunk_leaves:
        raise ptree.TreeError(f"chunk of {chunk_leaves} leaves is not a whole subtree of {tuple(arities)}")
    chunk_levels = arities[:m]
    above = sum(size // math.prod(chunk_levels[:i + 1]) for i in range(m))
    kept: list[list[bytes]] = [[] for _ in range(m + 1)]
    leaves_buf, levels_buf = ex.alloc(size * WORD), ex.alloc(max(above, 1) * WORD)
    try:
        _clear_bad(ex)
        for first in range(0, n, size):
            make_leaves(ex, first, size, Ptr(leaves_buf))
            levels = _levels_launches(ex, Ptr(leaves_buf), size, chunk_levels, Ptr(levels_buf))
            if replica_out is not None:
                replica_out[first * WORD:(first + size) * WORD] = ex.read(Ptr(leaves_buf), size * WORD).tobytes()
            if keep_from == 0:
                kept[0].append(ex.read(Ptr(leaves_buf), size * WORD).tobytes())
            for level, (ptr, count) in enumerate(levels, start=1):
                # The chunk roots (level m) are always needed: they start the levels above.
                if level >= keep_from or level == m:
                    kept[level].append(ex.read(ptr, count * WORD).tobytes())
        _raise_if_bad(ex, "tree")
    finally:
        ex.free(leaves_buf)
        ex.free(levels_buf)
    levels = [b"".join(parts) for parts in kept]
    if m < len(arities):
        top = _build(ex, n // size, arities[m:], _leaf_source(levels[m]), keep_from=0)[1]
        levels = levels + top[1:]
    return size, levels[keep_from:]


def tree_c(ex, layers: Sequence[bytes], arities: int | Sequence[int] = 8,
           chunk_leaves: int | None = None) -> list[bytes]:
    """tree-c: every level of ptree.build_levels(cpu.hash_columns(layers), arities)."""
    count = len(layers)
    cpu._compiled(count)
    _check_arity(count)
    sizes = [memoryview(layer).nbytes for layer in layers]
    if sizes[0] % WORD or sizes[0] == 0 or any(s != sizes[0] for s in sizes):
        raise ValueError(f"layers must be equal whole numbers of {WORD}-byte words, got {sizes} bytes")
    n = sizes[0] // WORD
    shape = ptree.arities_for(n, arities)
    for arity in shape:
        _check_arity(arity)
    views = [_as_uint8(layer) for layer in layers]
    state = {}

    def make_leaves(ex, first: int, size: int, dst: Ptr) -> None:
        if state.get("size") != size:
            if "buf" in state:
                ex.free(state["buf"])
            state["buf"], state["size"] = ex.alloc(count * size * WORD), size
        for j, view in enumerate(views):
            ex.write(Ptr(state["buf"], j * size * WORD), view[first * WORD:(first + size) * WORD])
        ex.launch(hash_launch(ex, count, Ptr(state["buf"]), 1, size, dst, size))
    make_leaves.inputs_per_leaf = count

    try:
        return _build(ex, n, shape, make_leaves, keep_from=0, chunk_leaves=chunk_leaves)[1]
    finally:
        if "buf" in state:
            ex.free(state["buf"])


def default_keep_from(arities: Sequence[int]) -> int:
    """Lotus's row discarding: keep tree-r-last from level 3 up (2 discarded rows above the
    leaves), or from the top of the base tree when it is lower than that."""
    base = 0
    while base < len(arities) and arities[base] == arities[0]:
        base += 1
    return min(3, base)


def encode_launch(data: Ptr, key: Ptr, out: Ptr, n: int, bad: Ptr) -> Launch:
    return Launch(MODULE, "encode_replica", blocks_for(n, 256), 256, (data, key, out, u64(n), bad))


def tree_r_last(ex, data, key, arities: int | Sequence[int] = 8, keep_from: int | None = None,
                chunk_leaves: int | None = None) -> tuple[bytes, list[bytes]]:
    """The replica and the kept rows of tree-r-last.

    replica word v = (data word v + key word v) mod p (key = the last layer's labels);
    returns (replica, levels[keep_from:]) where levels = ptree.build_levels(replica, arities).
    """
    data_bytes, key_bytes = ptree.leaf_bytes(data), ptree.leaf_bytes(key)
    if len(data_bytes) != len(key_bytes):
        raise ValueError(f"data ({len(data_bytes)} bytes) and key ({len(key_bytes)} bytes) differ in size")
    n = len(data_bytes) // WORD
    shape = ptree.arities_for(n, arities)
    for arity in shape:
        _check_arity(arity)
    if keep_from is None:
        keep_from = default_keep_from(shape)
    if not 0 <= keep_from <= len(shape):
        raise ptree.TreeError(f"keep_from must be in 0..{len(shape)}, got {keep_from}")
    data_view, key_view = _as_uint8(data_bytes), _as_uint8(key_bytes)
    state = {}

    def make_leaves(ex, first: int, size: int, dst: Ptr) -> None:
        if state.get("size") != size:
            if "buf" in state:
                ex.free(state["buf"])
            state["buf"], state["size"] = ex.alloc(2 * size * WORD), size
        span = slice(first * WORD, (first + size) * WORD)
        ex.write(Ptr(state["buf"]), data_view[span])
        ex.write(Ptr(state["buf"], size * WORD), key_view[span])
        ex.launch(encode_launch(Ptr(state["buf"]), Ptr(state["buf"], size * WORD), dst, size, _bad_flag(ex)))
    make_leaves.inputs_per_leaf = 2

    replica = bytearray(n * WORD)
    try:
        levels = _build(ex, n, shape, make_leaves, keep_from, chunk_leaves, replica_out=replica)[1]
    finally:
        if "buf" in state:
            ex.free(state["buf"])
    return bytes(replica), levels


def synthetic_launch(dst: Ptr, n: int, seed: int) -> Launch:
    """Fill n words at dst with canonical pseudo-random values (benchmark input; see
    zq_synthetic_item and `synthetic_words`, its host twin)."""
    return Launch(MODULE, "fill_synthetic", blocks_for(n, 256), 256, (dst, u64(n), u64(seed)))


def synthetic_words(n: int, seed: int) -> bytes:
    """What synthetic_launch writes, computed on the host (splitmix64 per limb)."""
    mask = (1 << 64) - 1
    out = bytearray()
    for i in range(n):
        for j in range(4):
            z = (seed + (4 * i + j + 1) * 0x9E3779B97F4A7C15) & mask
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            z ^= z >> 31
            out += (z & 0x3FFFFFFFFFFFFFFF if j == 3 else z).to_bytes(8, "little")
    return bytes(out)
