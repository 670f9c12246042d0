"""The SDR parent cache: for each node 14 x u32le parents (6 base, then 8 expander).

One file per graph (porep_id, node count, API version) in a cache directory, written
once (temp file + rename, so a reader never sees a partial file) and memory-mapped.
Opening checks the file size and recomputes a few sampled nodes; `verify=True` also
hashes the whole file against the rust-fil-proofs manifest digest (production graphs)
or the digest recorded when the file was written.  A bad file is rebuilt.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zqnode.proofs.files import write_atomic
from zqnode.proofs.params import ApiVersion, SealProof, seal_proof
from zqnode.proofs.sdr.drg import BASE_DEGREE, base_parents
from zqnode.proofs.sdr.feistel import EXP_DEGREE, FeistelPermutation, expander_parents, \
    expander_permutation

DEGREE = BASE_DEGREE + EXP_DEGREE
DEFAULT_CACHE_DIR = Path("~/.zqnode/parent-cache")
_CHUNK_NODES = 1 << 16
_SPOT_CHECKS = 16

log = logging.getLogger(__name__)

# SHA-256 of the whole cache file for the production graphs, from rust-fil-proofs
# storage-proofs-porep/parent_cache.json (entries attributed to proof ids by
# recomputing that file's cache-name hash).
PRODUCTION_DIGESTS = {
    0: "3da49221e2ed55371b86d0bf3d6526fcf128af61bed904f966428db1b531750d",
    1: "a76604f2f59f2744c7151653bbb1d8596b6b57d295e6fa6c1f0c41d725b502ce",
    2: "3adcc092423aa76d6a7184016893406da44dd974b219a89cd3ece25e4e3018f5",
    3: "3c4f9841fcc75aed8c695800e58d08480629f25af3a2aefd81904181d75cc0b6",
    4: "2778a732ad46a7dc18e0564dfdf59fd321dcde74ab476fd6d3c4e6735d7cd89c",
    5: "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97",
    6: "03cd13565ded97c240a5f52e54295ad127bd0461b57904cb3a4d79b097bbecab",
    7: "b5877d1963793efebc261fd8fde4dd6bc59e6b5c7abf52617a4ee023b8dc173a",
    8: "93deeac5e3052b6927467d4b2641bb782f05491de18d510147c93eeedd8672da",
    9: "2698b74eb2606b55b98d8b095e18b6320b47f46e00075956d48640ccd1641b03",
}


class ParentCacheError(ValueError):
    """A parent cache that cannot be used or written."""


@dataclass(frozen=True)
class Graph:
    """An SDR graph: everything the parents depend on."""

    nodes: int
    porep_id: bytes
    api_version: ApiVersion

    def __post_init__(self):
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) \
                or not 2 <= self.nodes < 1 << 32:
            raise ParentCacheError(f"graph node count must be an int in [2, 2^32), "
                                   f"got {self.nodes!r}")
        if not isinstance(self.porep_id, bytes) or len(self.porep_id) != 32:
            raise ParentCacheError("graph porep_id must be 32 bytes")
        if not isinstance(self.api_version, ApiVersion):
            raise ParentCacheError(f"graph api_version must be an ApiVersion, "
                                   f"got {self.api_version!r}")

    @classmethod
    def for_proof(cls, proof: int | str | SealProof) -> "Graph":
        p = seal_proof(proof)
        return cls(p.nodes, p.porep_id, p.api_version)

    @property
    def file_name(self) -> str:
        return f"sdr-parents-v{self.api_version.value}-{self.nodes}-{self.porep_id.hex()}.cache"

    @property
    def production_digest(self) -> str | None:
        for pid, digest in PRODUCTION_DIGESTS.items():
            if Graph.for_proof(pid) == self:
                return digest
        return None

    def permutation(self) -> FeistelPermutation:
        return expander_permutation(self.nodes, self.porep_id)


def graph_parents(graph: Graph, nodes: np.ndarray,
                  perm: FeistelPermutation | None = None) -> np.ndarray:
    """Parents (len, 14) uint32 of the given node indexes, computed (no cache)."""
    nodes = np.asarray(nodes, dtype=np.uint64).reshape(-1)
    if nodes.size and int(nodes.max()) >= graph.nodes:
        raise ParentCacheError(f"node {int(nodes.max())} out of range for {graph.nodes} nodes")
    out = np.empty((nodes.size, DEGREE), np.uint32)
    out[:, :BASE_DEGREE] = base_parents(nodes, graph.porep_id, graph.api_version)
    out[:, BASE_DEGREE:] = expander_parents(nodes, perm or graph.permutation(), graph.api_version)
    return out


def _cache_dir(cache_dir) -> Path:
    return Path(os.path.expanduser(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR))


def cache_path(graph: Graph, cache_dir: str | os.PathLike | None = None) -> Path:
    return _cache_dir(cache_dir) / graph.file_name


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def generate_parent_cache(graph: Graph, path: Path) -> str:
    """Write the cache file for `graph` at `path` atomically; returns its SHA-256 hex."""
    perm = graph.permutation()
    sha = hashlib.sha256()

    def write(f):
        for start in range(0, graph.nodes, _CHUNK_NODES):
            stop = min(start + _CHUNK_NODES, graph.nodes)
            block = graph_parents(graph, np.arange(start, stop, dtype=np.uint64), perm)
            data = block.astype("<u4", copy=False).tobytes()
            sha.update(data)
            f.write(data)

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
    digest = sha.hexdigest()
    write_atomic(_digest_path(path), lambda f: f.write(digest.encode() + b"\n"))
    return digest


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()


def _spot_check_nodes(nodes: int) -> np.ndarray:
    spread = np.linspace(2, nodes - 1, _SPOT_CHECKS, dtype=np.int64).tolist()
    picks = {0, 1, nodes - 1} | set(spread)
    return np.array(sorted(p for p in picks if p < nodes), dtype=np.uint64)


def _problem(graph: Graph, path: Path, verify: bool) -> str | None:
    """Why the existing file at `path` is not a good cache for `graph` (None if it is)."""
    expected_size = graph.nodes * DEGREE * 4
    if not path.is_file():
        return f"{path} is not a regular file"
    size = path.stat().st_size
    if size != expected_size:
        return f"{path} has {size} bytes, expected {expected_size}"
    data = np.memmap(path, dtype="<u4", mode="r", shape=(graph.nodes, DEGREE))
    sample = _spot_check_nodes(graph.nodes)
    if not np.array_equal(data[sample.astype(np.int64)], graph_parents(graph, sample)):
        return f"{path} has wrong parents at sampled nodes"
    del data
    if verify:
        expected = graph.production_digest
        if expected is None:
            try:
                expected = _digest_path(path).read_text().strip()
            except OSError:
                return f"{path} has no recorded digest to verify against"
        actual = file_sha256(path)
        if actual != expected:
            return f"{path} has SHA-256 {actual}, expected {expected}"
    return None


def parent_cache(graph: Graph, cache_dir: str | os.PathLike | None = None,
                 verify: bool = False) -> np.memmap:
    """The read-only (nodes, 14) uint32 parent table of `graph`, generating it if needed."""
    path = cache_path(graph, cache_dir)
    if path.exists():
        problem = _problem(graph, path, verify)
        if problem is None:
            return np.memmap(path, dtype="<u4", mode="r", shape=(graph.nodes, DEGREE))
        if not path.is_file():
            raise ParentCacheError(problem)
        log.warning("rebuilding parent cache: %s", problem)
    try:
        generate_parent_cache(graph, path)
    except OSError as e:
        raise ParentCacheError(f"cannot write parent cache {path}: {e}") from e
    return np.memmap(path, dtype="<u4", mode="r", shape=(graph.nodes, DEGREE))
