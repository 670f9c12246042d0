"""A sector's directory: its files, its metadata, tree files and atomic writes.

    DIR/sector.json                   SectorMeta (msgspec JSON): what the sector is
    DIR/unsealed                      the fr32-padded data, sector size bytes (AP, PC1)
    DIR/sealed                        the replica (PC2)
    DIR/cache/sc-02-data-tree-d.dat   tree-d, every level, leaves first (PC1)
    DIR/cache/sc-02-data-layer-N.dat  SDR labels of layer N (PC1)
    DIR/cache/sc-02-data-tree-c.dat   tree-c, every level (PC2)
    DIR/cache/sc-02-data-tree-r-last.dat  tree-r-last above its discarded rows (PC2)
    DIR/cache/p_aux                   comm_c || comm_r_last, as Lotus writes it (PC2)
    DIR/update/                       SnapDeals: the updated sector (proofs.snap) until the
                                      CC replica (the sector key) is released

Every file is written to a temporary name in its directory and renamed into place, so a
reader sees a whole file or none. File names in cache/ are Lotus's.
"""
from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from zqnode.proofs import ptree
from zqnode.proofs.params import SealProof, seal_proof
from zqnode.proofs.files import write_atomic
from zqnode.proofs.poseidon import WORD

META = "sector.json"
UNSEALED = "unsealed"
SEALED = "sealed"
CACHE = "cache"
TREE_D = "sc-02-data-tree-d.dat"
TREE_C = "sc-02-data-tree-c.dat"
TREE_R_LAST = "sc-02-data-tree-r-last.dat"
P_AUX = "p_aux"
UPDATE_DIR = "update"      # SnapDeals: the updated replica's directory, until the sector key goes
SYNTH_PROOFS = "syn-porep-vanilla-proofs.dat"     # Lotus's name; the format is ours (proofs.seal)

# Stages in order; a sector's `stage` is the last one finished.
STAGES = ("new", "pc1", "pc2", "finalized")


class SectorError(ValueError):
    """A sector directory that is missing, incomplete or corrupt, or a wrong request on it."""


class PieceMeta(msgspec.Struct, frozen=True):
    offset: int          # padded bytes from the sector's start
    padded_size: int
    payload_size: int
    comm_p: str          # hex


class UpdateMeta(msgspec.Struct, frozen=True):
    """A sector whose replica took deal data by SnapDeals (proofs.snap): its sealed file is
    the new replica, comm_d and comm_r the new ones; the CC sector's comm_r stays here."""
    update_proof: int
    comm_r_old: str      # hex


class SectorMeta(msgspec.Struct, kw_only=True):
    """Everything needed to work on a sector from its directory alone. Hex for bytes."""

    seal_proof: int
    miner: int
    sector: int
    sector_size: int
    pieces: list[PieceMeta] = []
    stage: str = "new"
    ticket: str = ""
    comm_d: str = ""
    replica_id: str = ""
    comm_r: str = ""
    update: UpdateMeta | None = None

    def proof(self) -> SealProof:
        return seal_proof(self.seal_proof)

    def at_least(self, stage: str) -> bool:
        return STAGES.index(self.stage) >= STAGES.index(stage)

    def hex_field(self, name: str) -> bytes:
        value = getattr(self, name)
        if not value:
            raise SectorError(f"sector {self.sector}: {name} is not set yet (stage {self.stage})")
        return bytes.fromhex(value)


_meta_decoder = msgspec.json.Decoder(SectorMeta)


# --- paths --------------------------------------------------------------------------------

def holding(sector_dir, comm_r: bytes | None) -> Path:
    """The directory of `sector_dir`'s replica of `comm_r`: itself, or during a SnapDeals
    upgrade its update once the chain has the new comm_r, there or where the release of
    the CC replica is moving it (proofs.snap.release_key) (None: itself)."""
    here = Path(sector_dir)
    if comm_r is not None:
        for where in (here, here / UPDATE_DIR, here.with_name(f".{here.name}.updated")):
            try:
                if load_meta(where).comm_r == comm_r.hex():
                    return where
            except SectorError:
                continue
    return here


def meta_path(sector_dir) -> Path:
    return Path(sector_dir) / META


def unsealed_path(sector_dir) -> Path:
    return Path(sector_dir) / UNSEALED


def sealed_path(sector_dir) -> Path:
    return Path(sector_dir) / SEALED


def cache_dir(sector_dir) -> Path:
    return Path(sector_dir) / CACHE


def cache_file(sector_dir, name: str) -> Path:
    return cache_dir(sector_dir) / name


def load_meta(sector_dir) -> SectorMeta:
    path = meta_path(sector_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SectorError(f"{sector_dir} is not a sector directory: {META} is missing") from None
    except OSError as e:
        raise SectorError(f"cannot read {path}: {e}") from None
    try:
        meta = _meta_decoder.decode(raw)
    except msgspec.DecodeError as e:
        raise SectorError(f"{path} is corrupt: {e}") from None
    if meta.stage not in STAGES:
        raise SectorError(f"{path} is corrupt: unknown stage {meta.stage!r}")
    try:                                   # sizes that every stage trusts (the file may be fetched)
        size = meta.proof().sector_size
    except ValueError:
        raise SectorError(f"{path} is corrupt: unknown seal proof {meta.seal_proof}") from None
    if meta.sector_size != size:
        raise SectorError(f"{path} is corrupt: sector size {meta.sector_size}, its proof's is {size}")
    for piece in meta.pieces:
        if not (0 <= piece.offset and 0 < piece.padded_size and piece.offset + piece.padded_size <= size
                and piece.padded_size % 128 == 0 and 0 <= piece.payload_size <= piece.padded_size // 128 * 127):
            raise SectorError(f"{path} is corrupt: a piece at {piece.offset} of {piece.padded_size} bytes "
                              f"({piece.payload_size} of payload) does not fit the sector")
    return meta


def save_meta(sector_dir, meta: SectorMeta) -> None:
    write_atomic(meta_path(sector_dir), msgspec.json.format(msgspec.json.encode(meta)) + b"\n")


# --- tree shapes and tree files ----------------------------------------------------------

@dataclass(frozen=True)
class TreeShape:
    """tree-c / tree-r-last of a seal proof: per-level arities and the stored levels."""

    nodes: int
    arities: tuple[int, ...]
    kept_from: int          # tree-r-last keeps levels[kept_from:]

    @classmethod
    def of(cls, proof: int | str | SealProof) -> "TreeShape":
        p = seal_proof(proof)
        base, sub, top = p.sector.tree_arity
        arities = ptree.level_arities(p.nodes, base, sub, top)
        base_leaves = p.nodes // math.prod(a for a in (sub, top) if a)
        return cls(p.nodes, arities, ptree.rows_to_discard(base_leaves, base) + 1)

    def level_sizes(self, arities=None) -> list[int]:
        """Nodes per level, leaves first, for the given arities (default: this tree)."""
        sizes = [self.nodes]
        for arity in (self.arities if arities is None else arities):
            sizes.append(sizes[-1] // arity)
        return sizes

    @property
    def binary_height(self) -> int:
        return self.nodes.bit_length() - 1


def write_levels(path, levels, first: int = 0) -> None:
    """Store levels[first:] of a tree, concatenated, atomically."""
    def write(f):
        for level in levels[first:]:
            f.write(level)
    write_atomic(path, write)


def read_levels(path, sizes: list[int], what: str) -> list[bytes]:
    """Split a tree file into levels of the given node counts; checks the file's size."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SectorError(f"{what} is missing: {path}") from None
    except OSError as e:
        raise SectorError(f"cannot read {what} {path}: {e}") from None
    expected = sum(sizes) * WORD
    if len(data) != expected:
        raise SectorError(f"{what} {path} has {len(data)} bytes, expected {expected}")
    levels, at = [], 0
    for size in sizes:
        levels.append(data[at:at + size * WORD])
        at += size * WORD
    return levels


def mapped_levels(path, sizes: list[int], what: str) -> list[memoryview]:
    """As read_levels, over a read-only memory map of the file: only the nodes read come
    into memory (C1 opens a few paths in a tree the size of the sector)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != sum(sizes) * WORD:
                raise SectorError(f"{what} {path} has {size} bytes, expected {sum(sizes) * WORD}")
            view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except FileNotFoundError:
        raise SectorError(f"{what} is missing: {path}") from None
    except OSError as e:
        raise SectorError(f"cannot read {what} {path}: {e}") from None
    levels, at = [], 0
    for n in sizes:
        levels.append(view[at:at + n * WORD])
        at += n * WORD
    return levels


def read_p_aux(sector_dir) -> tuple[bytes, bytes]:
    """(comm_c, comm_r_last) from p_aux."""
    path = cache_file(sector_dir, P_AUX)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SectorError(f"p_aux is missing: {path}") from None
    except OSError as e:
        raise SectorError(f"cannot read p_aux {path}: {e}") from None
    if len(data) != 2 * WORD:
        raise SectorError(f"p_aux {path} has {len(data)} bytes, expected {2 * WORD}")
    return data[:WORD], data[WORD:]


def open_words(path, nodes: int, what: str):
    """A sector-sized file of 32-byte words as a read-only numpy memmap (nodes, 32)."""
    import numpy as np
    try:
        size = Path(path).stat().st_size
    except FileNotFoundError:
        raise SectorError(f"{what} is missing: {path}") from None
    except OSError as e:
        raise SectorError(f"cannot read {what} {path}: {e}") from None
    if size != nodes * WORD:
        raise SectorError(f"{what} {path} has {size} bytes, expected {nodes * WORD}")
    try:
        return np.memmap(path, dtype=np.uint8, mode="r", shape=(nodes, WORD))
    except OSError as e:
        raise SectorError(f"cannot read {what} {path}: {e}") from None
