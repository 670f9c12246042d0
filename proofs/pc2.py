"""PreCommit2 in chunks: memory bounded whatever the sector size, on one or more processes,
byte for byte what the whole-sector computation gives.

The sector's nodes split into chunks of `span` consecutive nodes, each a whole subtree of
tree-c and tree-r-last (span = the product of the trees' first `height` arities). For a
chunk, from the layer files and the unsealed file: its column hashes and tree-c's levels
up to `height`, its replica words (data + last layer) and tree-r-last's levels up to
`height`, each written at its place in the (pre-sized, temporary) output files. The
levels above come from the chunks' top nodes, which are few. With `procs` > 1 the chunks
run in that many processes, each opening the files itself; the CPU backend only (a GPU
backend runs them in order, in this process).

Memory is about `chunk_bytes` of leaves times the layer count per process (the hashing
holds each word as a Python int), plus what the OS caches of the files.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.sdr.labels import layer_path
from zqnode.proofs.sector import TREE_C, TREE_R_LAST, TreeShape, cache_file, sealed_path, unsealed_path

CHUNK_BYTES = 4 << 20            # leaves per chunk by default: 128 Ki nodes


@dataclass(frozen=True)
class Plan:
    """Where each chunk's levels go: the chunk height and the byte offset of each level in
    the tree files (tree-r-last keeps levels[kept_from:])."""
    nodes: int
    arities: tuple[int, ...]
    height: int                  # chunk levels: 0..height
    kept_from: int

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

    def offsets(self, first: int) -> list[int]:
        """Byte offset of each level in a file holding levels[first:] (-1 below first)."""
        out, at = [], 0
        for level, size in enumerate(self.sizes()):
            out.append(at if level >= first else -1)
            if level >= first:
                at += size * WORD
        return out


def plan(shape: TreeShape, chunk_bytes: int = CHUNK_BYTES) -> Plan:
    """The highest chunk whose leaves fit `chunk_bytes` (at least one bottom group)."""
    height = 1
    while height < len(shape.arities) and math.prod(shape.arities[:height + 1]) * WORD <= chunk_bytes:
        height += 1
    return Plan(shape.nodes, shape.arities, height, shape.kept_from)


@dataclass(frozen=True)
class _Job:
    sector_dir: str
    layers: int
    plan: Plan
    backend: str
    index: int
    tmp_c: str
    tmp_r: str
    tmp_sealed: str


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


def _run_chunk(job: _Job, impl: Backend | None = None) -> tuple[bytes, bytes]:
    """One chunk: its parts of the three files written; (tree-c, tree-r-last) top nodes."""
    impl = impl or get_backend(job.backend)
    p, sector = job.plan, Path(job.sector_dir)
    start, stop = job.index * p.span, (job.index + 1) * p.span
    cache = cache_file(sector, TREE_C).parent
    layers = [_words(layer_path(cache, n), start, stop) for n in range(1, job.layers + 1)]
    arities = p.arities[:p.height]
    tree_c = impl.tree_c(layers, arities)
    _put_levels(job.tmp_c, p.offsets(0), tree_c, job.index)
    replica = impl.encode(_words(unsealed_path(sector), start, stop), layers[-1])
    _put(job.tmp_sealed, start * WORD, replica)
    tree_r = impl.tree_r_last(replica, arities)
    _put_levels(job.tmp_r, p.offsets(p.kept_from), tree_r, job.index)
    return bytes(tree_c[-1]), bytes(tree_r[-1])


def _put_levels(path: str, offsets: list[int], levels, index: int, first_level: int = 0) -> None:
    """Levels of chunk `index` (level first_level + k is levels[k]) at their places."""
    for k, data in enumerate(levels):
        at = offsets[first_level + k]
        if at >= 0:
            _put(path, at + index * len(data), bytes(data))


def _sized_temp(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.pc2.tmp")
    with open(tmp, "wb") as f:
        f.truncate(size)
    return str(tmp)


def _finish(tmp: str, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def trees_and_replica(sector_dir, seal_proof: int, layers: int, *, backend: str | Backend = "auto",
                      procs: int = 1, chunk_bytes: int = CHUNK_BYTES,
                      progress=None) -> tuple[bytes, bytes]:
    """Write tree-c, the sealed file and tree-r-last of a labelled sector; (comm_c,
    comm_r_last). Each file appears whole (renamed into place) or not at all."""
    if isinstance(procs, bool) or not isinstance(procs, int) or procs < 1:
        raise ValueError(f"procs must be a positive int, got {procs!r}")
    impl = get_backend(backend)
    shape = TreeShape.of(seal_proof)
    p = plan(shape, chunk_bytes)
    sector = Path(sector_dir)
    sizes = p.sizes()
    files = {"c": cache_file(sector, TREE_C), "r": cache_file(sector, TREE_R_LAST), "s": sealed_path(sector)}
    tmps = {"c": _sized_temp(files["c"], sum(sizes) * WORD),
            "r": _sized_temp(files["r"], sum(sizes[p.kept_from:]) * WORD),
            "s": _sized_temp(files["s"], p.nodes * WORD)}
    try:
        jobs = [_Job(str(sector), layers, p, impl.name, i, tmps["c"], tmps["r"], tmps["s"])
                for i in range(p.chunks)]
        tops_c, tops_r = bytearray(), bytearray()
        started = time.perf_counter()
        for done, (top_c, top_r) in enumerate(_map(jobs, impl, procs), start=1):
            tops_c += top_c
            tops_r += top_r
            if progress is not None and p.chunks > 1:      # one chunk is the whole step
                spent = time.perf_counter() - started
                progress(f"PC2 chunk {done}/{p.chunks} ({100 * done // p.chunks}%, "
                         f"{spent:.1f}s, ETA {spent / done * (p.chunks - done):.0f}s)")
        upper = p.arities[p.height:]
        roots = []
        for key, tops, first in (("c", tops_c, 0), ("r", tops_r, p.kept_from)):
            levels = impl.tree_r_last(bytes(tops), upper) if upper else [bytes(tops)]
            _put_levels(tmps[key], p.offsets(first), levels[1:], 0, first_level=p.height + 1)
            roots.append(bytes(levels[-1]))
        for key in ("c", "s", "r"):
            _finish(tmps[key], files[key])
    except BaseException:
        for tmp in tmps.values():
            Path(tmp).unlink(missing_ok=True)
        raise
    return roots[0], roots[1]


def _map(jobs: list[_Job], impl: Backend, procs: int):
    """The chunks' results in order: here, or on `procs` processes (CPU backend)."""
    if procs == 1 or impl.name != "cpu" or len(jobs) == 1:
        for job in jobs:
            yield _run_chunk(job, impl)
        return
    with ProcessPoolExecutor(max_workers=min(procs, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_run_chunk, jobs)
