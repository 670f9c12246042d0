"""What one sector takes, stage by stage: the disk its files fill, the memory its processes
hold and the time it runs, from the sector's shape and rates measured here and now on a
backend (`zqnode proofs plan`).

Disk and the sector's shapes are exact (the files proofs.seal writes). Times are the
measured rates times the work: tree-d and PC2 spread over the cores (proofs.chunked), PC1's
labelling is sequential, one core per sector (a worker runs several sectors' PC1 at once
instead). Memory is each process's chunk buffers plus an interpreter; the OS's cache of
the files (parent cache and layers for PC1) comes on top and makes PC1 fast when it fits.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from zqnode.proofs import chunked, merkle
from zqnode.proofs.backend import Backend
from zqnode.proofs.params import WINDOW_POST_CHALLENGES_PER_SECTOR, SealFeature, SealProof
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.sdr.cache import DEGREE, Graph, parent_cache
from zqnode.proofs.sdr.labels import label_layer
from zqnode.proofs.sector import TreeShape

INTERPRETER_BYTES = 40 << 20       # a Python process with numpy loaded, before any chunk
_PC2_SAMPLE_NODES = 512            # one 8-ary subtree of three levels


@dataclass(frozen=True)
class Rates:
    """Per core and second, on `backend`, for sectors of `layers` layers."""
    backend: str
    layers: int
    parent_nodes_per_s: float       # SDR parent cache entries built
    labels_per_s: float             # SDR labels (a layer > 1)
    tree_d_nodes_per_s: float       # SHA-254 nodes of tree-d
    pc2_nodes_per_s: float          # leaves through column hash, tree-c, encoding, tree-r-last
    poseidon8_per_s: float          # 8-ary Poseidon hashes (tree-r-last rebuilt by WindowPoSt)


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return max(time.perf_counter() - started, 1e-9)


def measure(impl: Backend, layers: int) -> Rates:
    """The rates on this machine now (a second or two; more for many layers)."""
    rng = np.random.default_rng(7)
    graph = Graph.for_proof(6)                                   # 8 MiB: its layers hash as a big one's
    with tempfile.TemporaryDirectory(prefix="zqnode-plan-") as tmp:
        parents_s = _timed(lambda: parent_cache(graph, tmp))
        parents = parent_cache(graph, tmp)
        prev = rng.integers(0, 256, (graph.nodes, WORD), np.uint8)
        prev[:, 31] &= 0x3F
        labels_s = _timed(lambda: label_layer(bytes(32), 2, parents, bytearray(graph.nodes * WORD), prev))
    leaves = rng.integers(0, 256, (1 << 15, WORD), np.uint8).tobytes()
    tree_d_s = _timed(lambda: merkle.tree_levels(leaves))
    words = rng.integers(0, 256, (layers + 1, _PC2_SAMPLE_NODES, WORD), np.uint8)
    words[:, :, 31] &= 0x3F                                      # canonical field elements
    arities = (8, 8, 8)

    def pc2() -> None:
        impl.tree_c(list(words[:layers]), arities)
        impl.tree_r_last(impl.encode(words[layers], words[layers - 1]), arities)
    impl.tree_r_last(words[0], arities)                          # warm up (Poseidon compiles)
    pc2_s = _timed(pc2)
    tree_s = _timed(lambda: impl.tree_r_last(words[0], arities))
    return Rates(impl.name, layers, graph.nodes / parents_s, graph.nodes / labels_s,
                 (1 << 15) / tree_d_s, _PC2_SAMPLE_NODES / pc2_s, 73 / tree_s)


@dataclass(frozen=True)
class Stage:
    name: str
    disk_bytes: int            # what the stage adds on disk (negative: what it frees)
    memory_bytes: int          # the stage's processes together, without the OS's cache
    seconds: float
    note: str = ""


def _tree_bytes(sizes: list[int], kept_from: int = 0) -> int:
    return sum(sizes[kept_from:]) * WORD


def check(p: SealProof) -> None:
    """ValueError for a proof type the plan does not model."""
    if p.feature is SealFeature.SYNTHETIC:
        raise ValueError(f"{p.name}: the plan does not model synthetic PoRep yet (its PC2 also "
                         "proves 2^18 challenges into a proofs file)")


def stages(p: SealProof, rates: Rates, cores: int, chunk_bytes: int = chunked.CHUNK_BYTES) -> list[Stage]:
    """Every stage of one sector with `cores` cores for it."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    check(p)
    if rates.layers != p.layers:
        raise ValueError(f"rates measured for {rates.layers} layers, the sector has {p.layers}")
    nodes, size, shape = p.nodes, p.sector_size, TreeShape.of(p)
    d_plan, c_plan = chunked.plan(chunked.binary_shape(nodes), chunk_bytes), chunked.plan(shape, chunk_bytes)
    d_procs, c_procs = min(cores, d_plan.chunks), min(cores, c_plan.chunks)
    chunk = c_plan.span * WORD
    segment = math.prod(shape.arities[:shape.kept_from])          # leaves WindowPoSt re-reads
    segment_hashes = sum(segment // math.prod(shape.arities[:k]) for k in range(1, shape.kept_from + 1))
    post_sector_s = WINDOW_POST_CHALLENGES_PER_SECTOR * segment_hashes / rates.poseidon8_per_s
    c1_s = p.porep_challenges * (segment_hashes / rates.poseidon8_per_s
                                 + (1 + DEGREE) / rates.pc2_nodes_per_s)
    tree_c = _tree_bytes(shape.level_sizes())
    tree_r = _tree_bytes(shape.level_sizes(), shape.kept_from)
    partition = p.sector.window_post_partition_sectors

    def on(procs: int) -> str:
        return f"on {procs} process{'es' if procs > 1 else ''}"
    return [
        Stage("parent cache", nodes * DEGREE * 4, INTERPRETER_BYTES, nodes / rates.parent_nodes_per_s,
              "once per sector size and machine, shared by every sector"),
        Stage("AP", size, INTERPRETER_BYTES + 2 * chunk, nodes / rates.tree_d_nodes_per_s,
              "the unsealed file and CommP"),
        Stage("PC1 tree-d", _tree_bytes(d_plan.sizes()), d_procs * (INTERPRETER_BYTES + 2 * d_plan.span * WORD),
              nodes / rates.tree_d_nodes_per_s / d_procs, on(d_procs)),
        Stage("PC1 labels", p.layers * size, INTERPRETER_BYTES + (64 << 20),
              p.layers * nodes / rates.labels_per_s,
              f"one core; fast when the parent cache and two layers "
              f"({(nodes * DEGREE * 4 + 2 * size) / 2 ** 30:.1f} GiB) fit in the OS's cache"),
        Stage("PC2", tree_c + size + tree_r, c_procs * (INTERPRETER_BYTES + (p.layers + 3) * chunk),
              nodes / rates.pc2_nodes_per_s / c_procs, on(c_procs)),
        Stage("C1", 0, INTERPRETER_BYTES, c1_s, f"{p.porep_challenges} challenges, checked"),
        Stage("FIN", -(p.layers * size + _tree_bytes(d_plan.sizes()) + tree_c + size), 0, 0.0,
              "keeps the sealed file and tree-r-last's stored rows; drops the rest"),
        Stage("WindowPoSt sector", 0, INTERPRETER_BYTES, post_sector_s,
              f"{WINDOW_POST_CHALLENGES_PER_SECTOR} challenges, each rebuilding {segment} leaves; "
              f"a full partition of {partition} sectors: {partition * post_sector_s / cores:.0f} s "
              f"on {cores} cores"),
    ]


def summary(p: SealProof, rates: Rates, cores: int, chunk_bytes: int = chunked.CHUNK_BYTES) -> dict:
    """The stages with the totals an operator sizes a worker by."""
    rows = stages(p, rates, cores, chunk_bytes)
    disk, peak = 0, 0
    for row in rows:
        disk += row.disk_bytes
        peak = max(peak, disk)
    sealing = [r for r in rows if r.name not in ("parent cache", "WindowPoSt sector")]
    return {"sector_size": p.sector_size, "seal_proof": p.name, "cores": cores,
            "backend": rates.backend, "rates": asdict(rates),
            "stages": [asdict(r) for r in rows],
            "peak_disk_bytes": peak, "kept_disk_bytes": disk,
            "peak_memory_bytes": max(r.memory_bytes for r in rows),
            "seal_seconds": sum(r.seconds for r in sealing),
            "cpus_here": os.cpu_count()}
