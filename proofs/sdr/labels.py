"""SDR labelling (PC1), PROOFS.md section 4, as rust-fil-proofs create_label/single.rs.

label(l, v) = SHA-256(replica_id || u32be(l) || u64be(v) || 20 zero bytes || P) with the
top two bits of the last byte cleared.  Layer 1: P = the 6 base-parent labels six times,
then the first again.  Layer l > 1: B = 6 base labels (layer l), E = 8 expander labels
(layer l - 1); P = B E B E B E[:3].  Node 0: P is empty.

Layers are raw 32-byte labels, one file per layer (`sc-02-data-layer-{l}.dat`, as Lotus
names them) in the sector's cache directory, written to a temp file and renamed when done.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from zqnode.proofs.eta import Eta
from zqnode.proofs.sdr.cache import DEGREE, Graph, parent_cache
from zqnode.proofs.sdr.drg import BASE_DEGREE

NODE_SIZE = 32
_CHUNK_NODES = 1 << 12              # small enough that a chunk's lists stay in the CPU caches
_LABEL = np.dtype((np.void, NODE_SIZE))                   # one label, tolist() gives bytes
_FIRST = np.dtype((np.void, 64))                          # one label's first block
_EXPANDERS = np.dtype((np.void, NODE_SIZE * (DEGREE - BASE_DEGREE)))
_MASKED = tuple(bytes((b & 0x3F,)) for b in range(256))   # a label's last byte, top bits cleared


class LabelError(ValueError):
    """Bad labelling input or an unusable layer file."""


def layer_path(sector_cache_dir: str | os.PathLike, layer: int) -> Path:
    return Path(sector_cache_dir) / f"sc-02-data-layer-{layer}.dat"


def label_layer(replica_id: bytes, layer: int, parents: np.ndarray, out,
                prev: np.ndarray | None, done=None) -> None:
    """Label one layer into `out`, a writable contiguous buffer of nodes * 32 bytes.

    parents: (nodes, 14) parent table; prev: the previous layer as (nodes, 32) uint8
    (None for layer 1); `done`, if given, is called with the nodes labelled so far."""
    nodes = parents.shape[0]
    mv = memoryview(out).cast("B")
    if mv.readonly or mv.nbytes != nodes * NODE_SIZE:
        raise LabelError(f"layer buffer must be {nodes * NODE_SIZE} writable bytes")
    if prev is not None and np.shape(prev) != (nodes, NODE_SIZE):
        raise LabelError(f"previous layer must have shape {(nodes, NODE_SIZE)}")
    rows = np.frombuffer(mv, np.uint64).reshape(nodes, 4)        # this layer, a label a row
    prev_rows = None if prev is None else np.asarray(prev).view(np.uint64).reshape(nodes, 4)
    # The hashlib ceiling is about 1 us a label; Python's cheapest handles on the rest are
    # bytes objects in lists.  So, a chunk at a time, numpy makes every label's first block,
    # its 8 expander parents (previous layer) as one bytes and the base parents labelled
    # before the chunk; the loop keeps the chunk's own labels as bytes in the same list
    # (`src`) and finds each base parent there by index.
    sha256 = hashlib.sha256
    join = b"".join
    masked = _MASKED
    pre = np.zeros((_CHUNK_NODES, 64), np.uint8)
    pre[:, :32] = np.frombuffer(replica_id, np.uint8)
    pre[:, 32:36] = np.frombuffer(layer.to_bytes(4, "big"), np.uint8)
    for start in range(0, nodes, _CHUNK_NODES):
        stop = min(start + _CHUNK_NODES, nodes)
        n = stop - start
        chunk = np.asarray(parents[start:stop])
        pre[:n, 36:44] = np.arange(start, stop, dtype=">u8").view(np.uint8).reshape(-1, 8)
        firsts = pre[:n].view(_FIRST).ravel().tolist()
        base = chunk[:, :BASE_DEGREE].astype(np.int64)
        ahead = base >= np.arange(start, stop)[:, None]
        ahead[0] &= start != 0                  # node 0 has no parents to hash
        if ahead.any():
            v = start + int(np.argmax(ahead.any(axis=1)))
            raise LabelError(f"parent table: node {v} has a base parent at or after itself")
        before = base < start
        k = int(np.count_nonzero(before))
        src = np.take(rows, base[before], axis=0).view(_LABEL).ravel().tolist()
        at = base + (k - start)                 # a parent in the chunk: after the k before it
        at[before] = np.arange(k)
        ats = iter(at.ravel().tolist())
        append = src.append
        exps = None
        if prev_rows is not None:
            exps = np.take(prev_rows, chunk[:, BASE_DEGREE:], axis=0).reshape(n, -1)
            exps = exps.view(_EXPANDERS).ravel().tolist()
        if start == 0:                 # node 0 hashes no parents
            d = sha256(firsts.pop(0)).digest()
            append(d[:31] + masked[d[31]])
            exps = exps and exps[1:]
            for _ in range(BASE_DEGREE):
                next(ats)
        if exps is None:
            for first, i0, i1, i2, i3, i4, i5 in zip(firsts, ats, ats, ats, ats, ats, ats):
                b = join((src[i0], src[i1], src[i2], src[i3], src[i4], src[i5]))
                h = sha256(first)
                h.update(b * 6)
                h.update(b[:32])
                d = h.digest()
                append(d[:31] + masked[d[31]])
        else:
            for first, e, i0, i1, i2, i3, i4, i5 in zip(firsts, exps, ats, ats, ats, ats, ats, ats):
                be = join((src[i0], src[i1], src[i2], src[i3], src[i4], src[i5], e))
                h = sha256(first)
                h.update(be)
                h.update(be)
                h.update(be[:288])
                d = h.digest()
                append(d[:31] + masked[d[31]])
        mv[NODE_SIZE * start:NODE_SIZE * stop] = join(src[k:])
        if done is not None:
            done(stop)


def node_label(replica_id: bytes, layer: int, node: int, base: list[bytes],
               expander: list[bytes] | None = None) -> bytes:
    """The label of one node from its parents' labels: what a PoRep verifier recomputes.

    `base` are the 6 base-parent labels (this layer), `expander` the 8 expander-parent
    labels (previous layer; None in layer 1), both in parent-table order. Node 0 hashes
    no parents at all."""
    if len(replica_id) != 32:
        raise LabelError("replica_id must be 32 bytes")
    if len(base) != BASE_DEGREE or (expander is not None and len(expander) != DEGREE - BASE_DEGREE):
        raise LabelError(f"a label needs {BASE_DEGREE} base and {DEGREE - BASE_DEGREE} expander"
                         " (or no expander) parent labels")
    if any(len(label) != NODE_SIZE for label in (*base, *(expander or ()))):
        raise LabelError(f"parent labels must be {NODE_SIZE} bytes")
    h = hashlib.sha256(bytes(replica_id) + layer.to_bytes(4, "big") + node.to_bytes(8, "big")
                       + bytes(20))
    if node != 0:
        parents = b"".join(base) + b"".join(expander or ())
        h.update(parents * (37 * NODE_SIZE // len(parents)))
        h.update(parents[:37 * NODE_SIZE % len(parents)])
    digest = bytearray(h.digest())
    digest[31] &= 0x3F
    return bytes(digest)


def _check_inputs(replica_id, graph: Graph, layers: int) -> bytes:
    if not isinstance(replica_id, (bytes, bytearray, memoryview)) or len(replica_id) != 32:
        raise LabelError("replica_id must be 32 bytes")
    if not isinstance(graph, Graph):
        raise LabelError(f"graph must be a Graph, not {type(graph).__name__}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise LabelError(f"layers must be a positive int, got {layers!r}")
    return bytes(replica_id)


def open_layer(sector_cache_dir, layer: int, nodes: int) -> np.memmap:
    """A finished layer as a read-only (nodes, 32) uint8 memmap."""
    path = layer_path(sector_cache_dir, layer)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LabelError(f"layer {layer} is missing: {path}") from None
    if size != nodes * NODE_SIZE:
        raise LabelError(f"{path} has {size} bytes, expected {nodes * NODE_SIZE}")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(nodes, NODE_SIZE))


def open_layers(sector_cache_dir, layers: int, nodes: int) -> list[np.memmap]:
    return [open_layer(sector_cache_dir, layer, nodes) for layer in range(1, layers + 1)]


def _layer_done(sector_cache_dir, layer: int, nodes: int) -> bool:
    path = layer_path(sector_cache_dir, layer)
    return path.is_file() and path.stat().st_size == nodes * NODE_SIZE


def _ticker(progress, layers: int, nodes: int, first: int):
    """Per layer, a `done(nodes)` that tells `progress` about every 5% of the labelling
    left, with its ETA (None without a progress)."""
    if progress is None:
        return lambda layer: None
    eta, step = Eta("PC1 labels", (layers - first + 1) * nodes), max(nodes // 20, 1)

    def for_layer(layer: int):
        before, said = (layer - first) * nodes, [0]

        def done(n: int) -> None:
            if n - said[0] >= step or n == nodes:
                said[0] = n
                progress(eta.line(before + n, f" layer {layer}/{layers} node {n}/{nodes}"))
        return done
    return for_layer


def label_layers(replica_id: bytes, graph: Graph, layers: int, sector_cache_dir,
                 parents: np.ndarray | None = None,
                 parent_cache_dir=None, progress=None) -> list[np.memmap]:
    """Label all layers into `sector_cache_dir` and return them as read-only memmaps.

    Layers already on disk (complete files; they only appear by rename) are kept, so
    an interrupted run resumes at the first missing layer.  `parents` defaults to the
    graph's parent cache in `parent_cache_dir`; `progress`, if given, gets a line with an
    ETA every 5% of a layer."""
    replica_id = _check_inputs(replica_id, graph, layers)
    if parents is None:
        parents = parent_cache(graph, parent_cache_dir)
    if parents.shape != (graph.nodes, DEGREE):
        raise LabelError(f"parents must have shape {(graph.nodes, DEGREE)}, got {parents.shape}")
    out_dir = Path(sector_cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = graph.nodes * NODE_SIZE
    prev = None
    first = next((n for n in range(1, layers + 1) if not _layer_done(out_dir, n, graph.nodes)), layers + 1)
    ticker = _ticker(progress, layers, graph.nodes, first)
    for layer in range(1, layers + 1):
        if not _layer_done(out_dir, layer, graph.nodes):
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".layer-{layer}.", suffix=".tmp")
            try:
                try:
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
                buf = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(size,))
                label_layer(replica_id, layer, parents, buf, prev, ticker(layer))
                buf.flush()
                del buf
                os.replace(tmp, layer_path(out_dir, layer))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        prev = open_layer(out_dir, layer, graph.nodes)
    return open_layers(out_dir, layers, graph.nodes)
