"""A sector's trees chunk by chunk: memory bounded whatever the sector size, on one or more
processes, byte for byte what the whole-sector computation gives.

The sector's nodes split into chunks of `span` consecutive nodes, each a whole subtree
(span = the product of the tree's first `height` arities). A chunk's levels up to
`height` are written at their places in a pre-sized temporary file; the levels above come
from the chunks' top nodes, which are few; the file is renamed into place at the end
(or removed, on any error). Three jobs use it:

    tree_d              PC1's tree-d over the unsealed file (binary SHA-254)
    trees_and_replica   PC2: from the layer files and the unsealed file, each chunk's
                        column hashes and tree-c levels, its replica words (data + last
                        layer, written into the sealed file) and tree-r-last's levels
    updated_replica     SnapDeals: each chunk's new replica words (the CC replica's plus
                        the data's times rho) and tree-r-last's levels

With `procs` > 1 the chunks run in that many spawned processes, each opening the files
itself; the CPU backend only (a GPU backend runs them in order, in this process).
Memory is about `chunk_bytes` of leaves times the layer count per process (Poseidon holds
each word as a Python int), plus what the OS caches of the files.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.eta import Eta
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.sdr.labels import layer_path
from zqnode.proofs.sector import (TREE_C, TREE_D, TREE_R_LAST, TreeShape, cache_dir, cache_file,
                                  sealed_path, unsealed_path)

CHUNK_BYTES = 4 << 20            # leaves per chunk by default: 128 Ki nodes


@dataclass(frozen=True)
class Plan:
    """How a tree splits: the chunk height and the tree's shape."""
    nodes: int
    arities: tuple[int, ...]
    height: int                  # chunk levels: 0..height
    kept_from: int               # the tree file holds levels[kept_from:]

    @property
    def span(self) -> int:
        return math.prod(self.arities[:self.height])

    @property
    def chunks(self) -> int:
        return self.nodes // self.span

    def sizes(self) -> list[int]:
        sizes = [self.nodes]
        for arity in self.arities:
            sizes.append(sizes[-1] // arity)
        return sizes

    def file_bytes(self) -> int:
        return sum(self.sizes()[self.kept_from:]) * WORD

    def offsets(self) -> list[int]:
        """Byte offset of each level in the tree file (-1: not kept)."""
        out, at = [], 0
        for level, size in enumerate(self.sizes()):
            out.append(at if level >= self.kept_from else -1)
            if level >= self.kept_from:
                at += size * WORD
        return out


def plan(shape: TreeShape, chunk_bytes: int = CHUNK_BYTES) -> Plan:
    """The highest chunk whose leaves fit `chunk_bytes` (at least one bottom group)."""
    height = 1
    while height < len(shape.arities) and math.prod(shape.arities[:height + 1]) * WORD <= chunk_bytes:
        height += 1
    return Plan(shape.nodes, shape.arities, height, shape.kept_from)


def binary_shape(nodes: int) -> TreeShape:
    """tree-d's shape: binary, every level kept."""
    return TreeShape(nodes, (2,) * (nodes.bit_length() - 1), 0)


# -- the chunks ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    kind: str                    # "tree_d" | "pc2" | "update"
    sector_dir: str
    backend: str
    index: int
    plans: tuple[Plan, ...]      # tree_d: (tree-d,); pc2: (tree-c, tree-r-last); update: (tree-r-last,)
    tmps: tuple[str, ...]        # tree_d: (tree-d,); pc2: (tree-c, tree-r-last, sealed); update: (tree-r-last, sealed)
    layers: int = 0
    sector_key: str = ""         # update: the CC replica
    factors: tuple[int, ...] = ()    # update: rho by high bits
    shift: int = 0


def _words(path: Path, start: int, stop: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start * WORD)
        data = f.read((stop - start) * WORD)
    if len(data) != (stop - start) * WORD:
        raise ValueError(f"{path} ends before node {stop}")
    return data


def _put(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _put_levels(path: str, p: Plan, levels, index: int, first_level: int = 0) -> None:
    """Levels of chunk `index` (level first_level + k is levels[k]) at their places."""
    offsets = p.offsets()
    for k, data in enumerate(levels):
        at = offsets[first_level + k]
        if at >= 0:
            _put(path, at + index * len(data), bytes(data))


def _run_chunk(job: _Job, impl: Backend | None = None) -> tuple[bytes, ...]:
    """One chunk's parts of the files written; the top node of each of its trees."""
    impl = impl or get_backend(job.backend)
    p, sector = job.plans[0], Path(job.sector_dir)
    start, stop = job.index * p.span, (job.index + 1) * p.span
    data = _words(unsealed_path(sector), start, stop)
    if job.kind == "tree_d":
        tree_d = impl.tree_d(data)
        _put_levels(job.tmps[0], p, tree_d, job.index)
        return (bytes(tree_d[-1]),)
    if job.kind == "update":
        replica = impl.update_encode(_words(Path(job.sector_key), start, stop), data, job.factors, job.shift, start)
        _put(job.tmps[1], start * WORD, replica)
        tree_r = impl.tree_r_last(replica, p.arities[:p.height])
        _put_levels(job.tmps[0], p, tree_r, job.index)
        return (bytes(tree_r[-1]),)
    layers = [_words(layer_path(cache_dir(sector), n), start, stop) for n in range(1, job.layers + 1)]
    arities = p.arities[:p.height]
    tree_c = impl.tree_c(layers, arities)
    _put_levels(job.tmps[0], p, tree_c, job.index)
    replica = impl.encode(data, layers[-1])
    _put(job.tmps[2], start * WORD, replica)
    tree_r = impl.tree_r_last(replica, arities)
    _put_levels(job.tmps[1], job.plans[1], tree_r, job.index)
    return bytes(tree_c[-1]), bytes(tree_r[-1])


def _map(jobs: list[_Job], impl: Backend, procs: int):
    """The chunks' results in order: here, or on `procs` processes (CPU backend)."""
    if procs == 1 or impl.name != "cpu" or len(jobs) == 1:
        for job in jobs:
            yield _run_chunk(job, impl)
        return
    with ProcessPoolExecutor(max_workers=min(procs, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_run_chunk, jobs)


@contextlib.contextmanager
def _temporaries(sizes: dict[Path, int]):
    """Pre-sized temporary files beside each path: renamed into place (synced) when the
    block ends well, removed when it raises. Each run's are its own (named by its pid), so a
    chunk process left over from a run killed with -9 cannot write into this run's files;
    that run's leftovers are removed."""
    tmps = {}
    try:
        for path, size in sizes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            for stale in path.parent.glob(f".{path.name}.*.chunked.tmp"):
                stale.unlink(missing_ok=True)
            tmps[path] = path.with_name(f".{path.name}.{os.getpid()}.chunked.tmp")
            with open(tmps[path], "wb") as f:
                f.truncate(size)
        yield [str(t) for t in tmps.values()]
        for path, tmp in tmps.items():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def _run(jobs: list[_Job], impl: Backend, procs: int, what: str, progress) -> list[bytearray]:
    """Every chunk; each tree's top nodes, concatenated in order."""
    if isinstance(procs, bool) or not isinstance(procs, int) or procs < 1:
        raise ValueError(f"procs must be a positive int, got {procs!r}")
    tops: list[bytearray] = []
    eta = Eta(what, len(jobs))
    for done, result in enumerate(_map(jobs, impl, procs), start=1):
        tops = tops or [bytearray() for _ in result]
        for acc, top in zip(tops, result):
            acc += top
        if progress is not None and len(jobs) > 1:       # one chunk is the whole step
            progress(eta.line(done, f" chunk {done}/{len(jobs)}"))
    return tops


def _upper(tmp: str, p: Plan, tops: bytes, tree) -> bytes:
    """The levels above the chunks, from their top nodes, written; the root."""
    levels = tree(tops) if p.height < len(p.arities) else [tops]
    _put_levels(tmp, p, levels[1:], 0, first_level=p.height + 1)
    return bytes(levels[-1])


# -- the jobs ------------------------------------------------------------------------------------

@contextlib.contextmanager
def tree_d(sector_dir, nodes: int, *, backend: str | Backend = "auto", procs: int = 1,
           chunk_bytes: int = CHUNK_BYTES, progress=None):
    """tree-d over the unsealed file: yields comm_d; the tree file is put in place when the
    block ends well (the caller checks comm_d first), else it is dropped."""
    impl = get_backend(backend)
    p = plan(binary_shape(nodes), chunk_bytes)
    path = cache_file(sector_dir, TREE_D)
    with _temporaries({path: p.file_bytes()}) as (tmp,):
        jobs = [_Job("tree_d", str(sector_dir), impl.name, i, (p,), (tmp,)) for i in range(p.chunks)]
        (tops,) = _run(jobs, impl, procs, "PC1 tree-d", progress)
        yield _upper(tmp, p, bytes(tops), lambda t: impl.tree_d(t))


def updated_replica(sector_dir, sector_key, seal_proof: int, factors, shift: int, *,
                    backend: str | Backend = "auto", procs: int = 1, chunk_bytes: int = CHUNK_BYTES,
                    progress=None) -> bytes:
    """SnapDeals: write the sealed file (sector_key's words + the unsealed file's times
    their factor, proofs.update) and its tree-r-last; comm_r_last. Each file appears whole
    (renamed into place) or not at all."""
    impl = get_backend(backend)
    shape = TreeShape.of(seal_proof)
    r = plan(shape, chunk_bytes)
    sector = Path(sector_dir)
    sizes = {cache_file(sector, TREE_R_LAST): r.file_bytes(), sealed_path(sector): shape.nodes * WORD}
    with _temporaries(sizes) as tmps:
        jobs = [_Job("update", str(sector), impl.name, i, (r,), tuple(tmps), sector_key=str(sector_key),
                     factors=tuple(factors), shift=shift) for i in range(r.chunks)]
        (tops,) = _run(jobs, impl, procs, "SNAP encode", progress)
        return _upper(tmps[0], r, bytes(tops), lambda t: impl.tree_r_last(t, r.arities[r.height:]))


def trees_and_replica(sector_dir, seal_proof: int, layers: int, *, backend: str | Backend = "auto",
                      procs: int = 1, chunk_bytes: int = CHUNK_BYTES,
                      progress=None) -> tuple[bytes, bytes]:
    """Write tree-c, the sealed file and tree-r-last of a labelled sector; (comm_c,
    comm_r_last). Each file appears whole (renamed into place) or not at all."""
    impl = get_backend(backend)
    shape = TreeShape.of(seal_proof)
    c = plan(TreeShape(shape.nodes, shape.arities, 0), chunk_bytes)      # tree-c keeps every level
    r = plan(shape, chunk_bytes)
    sector = Path(sector_dir)
    sizes = {cache_file(sector, TREE_C): c.file_bytes(), cache_file(sector, TREE_R_LAST): r.file_bytes(),
             sealed_path(sector): shape.nodes * WORD}
    with _temporaries(sizes) as tmps:
        jobs = [_Job("pc2", str(sector), impl.name, i, (c, r), tuple(tmps), layers) for i in range(c.chunks)]
        tops_c, tops_r = _run(jobs, impl, procs, "PC2", progress)
        upper = r.arities[r.height:]
        return (_upper(tmps[0], c, bytes(tops_c), lambda t: impl.tree_r_last(t, upper)),
                _upper(tmps[1], r, bytes(tops_r), lambda t: impl.tree_r_last(t, upper)))
