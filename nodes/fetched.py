"""Checks for sector data fetched from another node: a node never takes a peer's word.

A worker that fetches a sector's files (from another worker or a store) checks them
against commitments from its own side (the manager's sector record, the chain), never
against the fetched sector.json, before it works on them or reports them present:

    verify_piece(source, comm_p, payload_size=None)          a piece's data (before AP)
    verify_unsealed(sector_dir, comm_d, sector_size)          the unsealed file: CommD
    verify_sealed(sector_dir, comm_r, seal_proof, samples=16) p_aux, tree-r-last, replica
    verify_meta(sector_dir, comm_r, comm_d)                   sector.json's commitments

Each raises FetchedDataError (a ValueError) naming what does not match. Only proofs/ is
used. The worker runs the last three on every sector it fetched whose commitments it
knows (`Expected`: from the chain's precommit or sector, or from a WDP's params), before
a task uses the files (nodes.worker.fetch.check_fetched); a task that checks its own
output against sector.json (UNS: the data it unseals against comm_d) then checks it
against ours. verify_sealed re-hashes `samples` random segments of the replica up to
the stored rows of tree-r-last (as a WindowPoSt does); `samples=None` re-hashes them all.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from zqnode.proofs import ptree
from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.commp import CommP, CommPError, commp
from zqnode.proofs.merkle import merkle_root
from zqnode.proofs.params import ProofParamsError, seal_proof as seal_proof_of
from zqnode.proofs.sector import (TREE_R_LAST, SectorError, TreeShape, cache_file, load_meta, open_words,
                                  read_levels, read_p_aux, sealed_path, unsealed_path)

CHUNK = 1 << 20                      # bytes of the unsealed file hashed at a time


class FetchedDataError(ValueError):
    """Fetched data that does not match the commitment it must have."""


@dataclass(frozen=True)
class Expected:
    """What a sector's data must hash to, by our own side's account (b"": unknown)."""
    seal_proof: int
    comm_r: bytes = b""
    comm_d: bytes = b""
    sector_key: bytes = b""            # SnapDeals: an updated sector's CC comm_r, its sector key


def verify_piece(source, comm_p: bytes, payload_size: int | None = None) -> CommP:
    """The piece (a path, a stream or bytes) must have CommP `comm_p` (and that payload size)."""
    try:
        got = commp(source)
    except CommPError as e:
        raise FetchedDataError(f"piece: {e}") from None
    if got.commitment != bytes(comm_p):
        raise FetchedDataError(f"piece: CommP is {got.commitment.hex()}, expected {bytes(comm_p).hex()}")
    if payload_size is not None and got.payload_size != payload_size:
        raise FetchedDataError(f"piece: {got.payload_size} payload bytes, expected {payload_size}")
    return got


def verify_unsealed(sector_dir, comm_d: bytes, sector_size: int, *,
                    backend: str | Backend = "auto") -> None:
    """The sector's unsealed file (fr32-padded, `sector_size` bytes) must hash to `comm_d`.
    Read a chunk at a time: memory stays at one chunk whatever the sector's size."""
    path = unsealed_path(sector_dir)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise FetchedDataError(f"unsealed file {path}: {e.strerror}") from None
    if size != sector_size or sector_size & (sector_size - 1) or sector_size < 32:
        raise FetchedDataError(f"unsealed file {path} has {size} bytes, expected {sector_size}")
    impl = get_backend(backend)
    chunk = min(CHUNK, sector_size)
    roots = []
    with open(path, "rb") as f:
        while data := f.read(chunk):
            if len(data) != chunk:
                raise FetchedDataError(f"unsealed file {path} changed while it was read")
            roots.append(impl.sha254_root(data))
    got = merkle_root(b"".join(roots))
    if got != bytes(comm_d):
        raise FetchedDataError(f"unsealed file {path} hashes to CommD {got.hex()}, "
                               f"expected {bytes(comm_d).hex()}")


def verify_meta(sector_dir, comm_r: bytes = b"", comm_d: bytes = b"") -> None:
    """The fetched sector.json must name the commitments we expect, where it names any
    (before PC2 it has none): tasks read them from there."""
    try:
        meta = load_meta(sector_dir)
    except SectorError as e:
        raise FetchedDataError(str(e)) from None
    for name, ours in (("comm_r", comm_r), ("comm_d", comm_d)):
        theirs = getattr(meta, name)
        if ours and theirs and theirs != bytes(ours).hex():
            raise FetchedDataError(f"sector.json has {name} {theirs[:16]}..., not {bytes(ours).hex()[:16]}...")


def verify_sealed(sector_dir, comm_r: bytes, seal_proof: int | str, *, samples: int | None = 16,
                  rng: random.Random | None = None, backend: str | Backend = "auto") -> None:
    """The sealed replica and its cache must belong to `comm_r`: p_aux hashes to comm_r,
    the stored rows of tree-r-last hash to comm_r_last, and re-hashed replica segments
    (`samples` random ones, or all) give the stored rows. The tree's shape comes from
    `seal_proof` (what we expect), not from the fetched files."""
    try:
        shape = TreeShape.of(seal_proof_of(seal_proof))
    except ProofParamsError as e:
        raise FetchedDataError(str(e)) from None
    comm_r = bytes(comm_r)
    try:
        comm_c, comm_r_last = read_p_aux(sector_dir)
        if ptree.comm_r(comm_c, comm_r_last) != comm_r:
            raise FetchedDataError(f"p_aux does not hash to comm_r {comm_r.hex()}")
        upper = read_levels(cache_file(sector_dir, TREE_R_LAST),
                            shape.level_sizes()[shape.kept_from:], "tree-r-last")
        if ptree.build_levels(upper[0], shape.arities[shape.kept_from:]) != upper \
                or upper[-1] != comm_r_last:
            raise FetchedDataError("the stored rows of tree-r-last do not hash to comm_r_last")
        replica = open_words(sealed_path(sector_dir), shape.nodes, "sealed file")
    except (SectorError, ptree.TreeError) as e:
        raise FetchedDataError(str(e)) from None
    segment = shape.nodes // (len(upper[0]) // 32)
    starts = range(0, shape.nodes, segment)
    if samples is not None and samples < len(starts):
        starts = sorted((rng or random.SystemRandom()).sample(starts, samples))

    def read(nodes: range) -> bytes:
        return replica[nodes.start:nodes.stop].tobytes()
    try:
        get_backend(backend).tree_r_paths(upper, read, list(starts), shape.arities, check=True)
    except ptree.TreeError as e:
        raise FetchedDataError(f"the sealed file {Path(sealed_path(sector_dir))} does not match "
                               f"tree-r-last: {e}") from None
