"""Sealing, one function per Lotus task type, each working on a sector directory.

    add_piece   (AP)   write a piece, fr32-padded, at its aligned offset; its CommP
    precommit1  (PC1)  tree-d over the unsealed data (comm_d), replica_id, SDR labels
    precommit2  (PC2)  tree-c (comm_c), the replica (sealed file), tree-r-last (comm_r_last),
                       p_aux, comm_r
    commit1     (C1)   the PoRep challenges and the vanilla proof (proofs.porep)
    finalize    (FIN)  drop what only sealing needs; keep what WindowPoSt needs
    unseal      (UNS)  the data back from the replica (labels recomputed when dropped)

and `seal_sector`, all of them in a row into a new directory (what `zqnode proofs seal`
runs).

Each stage reads what it needs from the directory (see proofs.sector for its layout),
writes whole files atomically and records progress in sector.json, so the worker can run
each as its own task, on any machine that has the directory. A stage run again redoes its
work (PreCommit1 with another ticket drops what the old one sealed); a stage run too
early, or on a corrupt directory, raises SectorError (or SealError for bad arguments) and
changes nothing. The heavy hashing goes through proofs.backend;
every result says which backend ran. PC1's labels go to disk as they are made, tree-d
and PC2 work in chunks of bounded size (proofs.chunked), unseal decodes a chunk at a time
and C1 reads the trees and layers through memory maps (only the opened paths come in).
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np

from zqnode.proofs import commp as commp_mod
from zqnode.proofs import chunked, fr32, merkle, porep, ptree
from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.eta import Eta
from zqnode.proofs.cid import piece_cid_v1, piece_cid_v2, sealed_cid
from zqnode.proofs.params import ProofParamsError, SealFeature, prover_id, replica_id, seal_proof
from zqnode.proofs.porep import SealError
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.sdr.cache import Graph
from zqnode.proofs.sdr.challenges import synthetic_challenges, synthetic_count, synthetic_indexes
from zqnode.proofs.sdr.labels import LabelError, label_layers, layer_path, open_layers
from zqnode.proofs.sector import (P_AUX, SYNTH_PROOFS, TREE_C, TREE_D, TREE_R_LAST, PieceMeta, SectorError, SectorMeta,
                                  TreeShape, cache_dir, cache_file, load_meta, mapped_levels, meta_path,
                                  open_words, read_levels, read_p_aux, save_meta, sealed_path,
                                  unsealed_path, write_atomic)

Progress = Callable[[str], None] | None

__all__ = ["PieceInfo", "PreCommit1Out", "PreCommit2Out", "Commit1Out", "add_piece",
           "precommit1", "precommit2", "commit1", "finalize", "unseal", "SealError",
           "SectorError", "tree_r_last_upper", "checked_p_aux", "replica_reader", "SealedSector",
           "seal_sector", "seal_steps"]


class PieceInfo(NamedTuple):
    comm_p: bytes
    payload_size: int
    padded_size: int
    offset: int              # padded bytes from the sector's start

    def cid(self) -> str:
        return piece_cid_v1(self.comm_p)

    def cid_v2(self) -> str:
        return piece_cid_v2(self.comm_p, self.payload_size)


class PreCommit1Out(NamedTuple):
    comm_d: bytes
    replica_id: bytes
    backend: str


class PreCommit2Out(NamedTuple):
    comm_d: bytes
    comm_r: bytes
    comm_c: bytes
    comm_r_last: bytes
    backend: str

    def comm_d_cid(self) -> str:
        return piece_cid_v1(self.comm_d)

    def comm_r_cid(self) -> str:
        return sealed_cid(self.comm_r)


class Commit1Out(NamedTuple):
    proof: bytes
    challenges: list[list[int]]
    backend: str


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _bytes32(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        got = len(value) if isinstance(value, (bytes, bytearray, memoryview)) else type(value).__name__
        raise SealError(f"{what} must be 32 bytes, got {got}")
    return bytes(value)


def _meta_for(sector_dir, seal_proof_id, miner, sector) -> SectorMeta:
    """The sector's metadata, created from the ids when the directory has none yet; ids
    that are given must match the recorded ones."""
    given = {"seal_proof": seal_proof_id, "miner": miner, "sector": sector}
    if meta_path(sector_dir).exists():
        meta = load_meta(sector_dir)
        if seal_proof_id is not None:
            try:
                given["seal_proof"] = seal_proof(seal_proof_id).id
            except ProofParamsError as e:
                raise SealError(str(e)) from None
        for name, value in given.items():
            if value is not None and value != getattr(meta, name):
                raise SectorError(f"{sector_dir} holds {name} {getattr(meta, name)}, not {value}")
        return meta
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise SectorError(f"{sector_dir} has no {meta_path(sector_dir).name}: give "
                          f"{', '.join(missing)} to start the sector")
    try:
        p = seal_proof(seal_proof_id)
        prover_id(miner)
    except ProofParamsError as e:
        raise SealError(str(e)) from None
    if isinstance(sector, bool) or not isinstance(sector, int) or not 0 <= sector < 1 << 64:
        raise SealError(f"sector number must be an int in 0..2^64-1, got {sector!r}")
    return SectorMeta(seal_proof=p.id, miner=miner, sector=sector, sector_size=p.sector_size)


def _ensure_unsealed(sector_dir, size: int) -> Path:
    """The unsealed file, created all zero (sparse) when it does not exist yet."""
    path = unsealed_path(sector_dir)
    if not path.exists():
        write_atomic(path, lambda f: f.truncate(size))
    elif path.stat().st_size != size:
        raise SectorError(f"{path} has {path.stat().st_size} bytes, expected {size}")
    return path


# --- AP ---------------------------------------------------------------------------------------

def _payload_size(source, size: int | None) -> int:
    if isinstance(source, (str, os.PathLike)):
        try:
            actual = os.stat(source).st_size
        except OSError as e:
            raise SealError(f"cannot read piece {source}: {e}") from None
    elif hasattr(source, "read") or hasattr(source, "readinto"):
        if size is None:
            raise SealError("a piece given as a stream needs its size")
        return size
    else:
        try:
            actual = memoryview(source).nbytes
        except TypeError:
            raise SealError(f"a piece is a path, a binary stream or bytes, not "
                            f"{type(source).__name__}") from None
    if size is not None and size != actual:
        raise SealError(f"piece size {size} given, but the piece has {actual} bytes")
    return actual


def add_piece(sector_dir, source, *, seal_proof: int | str | None = None, miner: int | None = None,
              sector: int | None = None, size: int | None = None,
              backend: str | Backend = "auto") -> PieceInfo:
    """AP: write a piece (path, stream of `size` bytes, or bytes) into the sector.

    The piece is fr32-padded into the smallest piece size that holds it and placed at the
    next offset aligned to that size (the gap stays zero: zero filler pieces). The first
    piece starts the sector, so it needs seal_proof, miner and sector."""
    meta = _meta_for(sector_dir, seal_proof, miner, sector)
    if meta.stage != "new":
        raise SectorError(f"sector {meta.sector} is past AddPiece (stage {meta.stage})")
    impl = get_backend(backend)
    payload = _payload_size(source, size)
    if payload < commp_mod.MIN_PAYLOAD:
        raise commp_mod.PayloadTooSmall(f"a piece needs at least {commp_mod.MIN_PAYLOAD} bytes, "
                                        f"got {payload}")
    padded = fr32.piece_size_for(payload)
    sizes = [piece.padded_size for piece in meta.pieces] + [padded]
    slots = commp_mod.piece_layout(sizes, meta.sector_size)   # PiecesDoNotFit if it does not
    offset = next(s.offset for s in slots if s.piece == len(sizes) - 1)

    Path(sector_dir).mkdir(parents=True, exist_ok=True)
    path = _ensure_unsealed(sector_dir, meta.sector_size)
    with open(path, "r+b") as f:
        f.seek(offset)

        def write(padded_run) -> None:
            # A stream longer than it said must not spill past its piece.
            if f.tell() + memoryview(padded_run).nbytes > offset + padded:
                raise SealError(f"the piece has more than the {payload} bytes it was given as")
            f.write(padded_run)
        try:
            result = commp_mod.commp(source, sink=write, root=impl.sha254_root)
            if result.payload_size != payload:
                raise SealError(f"the piece gave {result.payload_size} bytes, expected {payload}")
            written = f.tell() - offset
            f.write(bytes(padded - written))     # the piece's own zero tail
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            # Put the filler back, so the sector stays what its metadata says.
            f.seek(offset)
            f.write(bytes(padded))
            f.flush()
            raise
    meta.pieces = [*meta.pieces, PieceMeta(offset, padded, payload, result.commitment.hex())]
    save_meta(sector_dir, meta)
    return PieceInfo(result.commitment, payload, padded, offset)


# --- PC1 --------------------------------------------------------------------------------------

def _drop(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def _sealing_files(sector_dir, layers: int) -> list[Path]:
    """Files PC1 and later stages write, which a new replica_id makes stale."""
    cache = cache_dir(sector_dir)
    return ([layer_path(cache, layer) for layer in range(1, layers + 1)]
            + [cache / TREE_C, cache / TREE_R_LAST, cache / P_AUX, cache / SYNTH_PROOFS,
               sealed_path(sector_dir)])


def precommit1(sector_dir, ticket: bytes, *, seal_proof: int | str | None = None,
               miner: int | None = None, sector: int | None = None, parent_cache_dir=None,
               backend: str | Backend = "auto", procs: int = 1, chunk_bytes: int = chunked.CHUNK_BYTES,
               progress: Progress = None) -> PreCommit1Out:
    """PC1: tree-d and comm_d over the unsealed data (in chunks, on `procs` processes:
    proofs.chunked), replica_id, and all SDR layers.

    A directory without pieces is a committed-capacity sector (all zeros); then the ids
    must be given. An interrupted labelling resumes at the first missing layer. Another
    ticket (a new one after the old expired) starts the replica over: the layers, trees
    and sealed file of the old one go, the pieces and the unsealed data stay."""
    ticket = _bytes32(ticket, "ticket")
    meta = _meta_for(sector_dir, seal_proof, miner, sector)
    if meta.stage == "finalized":      # the unsealed data may be gone: a rebuild starts clean
        raise SectorError(f"sector {meta.sector} is finalized: PreCommit1 cannot run on it again")
    impl = get_backend(backend)
    p = meta.proof()
    started = time.perf_counter()
    Path(sector_dir).mkdir(parents=True, exist_ok=True)
    open_words(_ensure_unsealed(sector_dir, meta.sector_size), p.nodes, "unsealed file")
    expected = commp_mod.commd([(piece.padded_size, bytes.fromhex(piece.comm_p))
                                for piece in meta.pieces], meta.sector_size)
    with chunked.tree_d(sector_dir, p.nodes, backend=impl, procs=procs, chunk_bytes=chunk_bytes,
                        progress=getattr(progress, "within", None)) as comm_d:
        if comm_d != expected:         # the new tree-d is dropped, the old files stay
            raise SectorError(f"unsealed file {unsealed_path(sector_dir)} does not hold the recorded "
                              f"pieces: its comm_d is {comm_d.hex()}, the pieces give {expected.hex()}")
        _say(progress, f"PC1 tree-d: comm_d {piece_cid_v1(comm_d)} ({time.perf_counter() - started:.1f}s)")
        rid = replica_id(prover_id(meta.miner), meta.sector, ticket, comm_d, p)
        if meta.replica_id and meta.replica_id != rid.hex():     # sealed with another ticket
            meta.stage = "new"
            save_meta(sector_dir, meta)    # first: the stage never claims files that are gone
            _drop(_sealing_files(sector_dir, p.layers))
    meta.ticket, meta.comm_d, meta.replica_id, meta.comm_r = ticket.hex(), comm_d.hex(), rid.hex(), ""
    meta.stage = "new"
    save_meta(sector_dir, meta)
    label_layers(rid, Graph.for_proof(p), p.layers, cache_dir(sector_dir),
                 parent_cache_dir=parent_cache_dir, progress=getattr(progress, "within", None))
    _say(progress, f"PC1 labels: {p.layers} layers of {p.nodes} nodes "
                   f"({time.perf_counter() - started:.1f}s)")
    meta.stage = "pc1"
    save_meta(sector_dir, meta)
    return PreCommit1Out(comm_d, rid, impl.name)


# --- PC2 --------------------------------------------------------------------------------------

def _layers(sector_dir, meta: SectorMeta) -> list[np.memmap]:
    p = meta.proof()
    try:
        return open_layers(cache_dir(sector_dir), p.layers, p.nodes)
    except LabelError as e:
        hint = " (finalize dropped them)" if meta.stage == "finalized" else ""
        raise SectorError(f"sector {meta.sector}: {e}{hint}") from None


def precommit2(sector_dir, *, backend: str | Backend = "auto", procs: int = 1,
               chunk_bytes: int = chunked.CHUNK_BYTES, progress: Progress = None) -> PreCommit2Out:
    """PC2: tree-c (comm_c), the replica written as the sealed file, tree-r-last kept above
    its discarded rows (comm_r_last), p_aux, and comm_r = Poseidon2(comm_c, comm_r_last).
    In chunks of `chunk_bytes` of leaves, on `procs` processes (proofs.chunked); a progress
    with a `within` method is told of each chunk. A synthetic proof type then proves its
    synthetic challenges and drops the layers (Lotus: GenerateSynthProofs, ClearLayerData);
    run again on such a sector, it returns what it recorded."""
    meta = load_meta(sector_dir)
    if not meta.at_least("pc1") or meta.stage == "finalized":
        raise SectorError(f"sector {meta.sector} is not ready for PreCommit2 (stage {meta.stage})")
    impl = get_backend(backend)
    if meta.stage == "pc2" and meta.proof().feature is SealFeature.SYNTHETIC:
        # The layers are gone with the proofs made: a second run (a worker killed before
        # its result was stored) returns what the first one recorded.
        if not cache_file(sector_dir, SYNTH_PROOFS).is_file():
            raise SectorError(f"sector {meta.sector}: its layers are dropped and its synthetic proofs "
                              "are missing; PreCommit1 must run again")
        comm_c, comm_r_last = checked_p_aux(sector_dir, meta)
        _drop(layer_path(cache_dir(sector_dir), n) for n in range(1, meta.proof().layers + 1))
        return PreCommit2Out(meta.hex_field("comm_d"), meta.hex_field("comm_r"), comm_c, comm_r_last,
                             impl.name)
    p = meta.proof()
    started = time.perf_counter()
    _layers(sector_dir, meta)                      # every layer is there, whole
    open_words(unsealed_path(sector_dir), p.nodes, "unsealed file")
    comm_c, comm_r_last = chunked.trees_and_replica(sector_dir, meta.seal_proof, p.layers, backend=impl,
                                                procs=procs, chunk_bytes=chunk_bytes,
                                                progress=getattr(progress, "within", None))
    _say(progress, f"PC2 tree-c: comm_c {comm_c.hex()} ({time.perf_counter() - started:.1f}s)")
    write_atomic(cache_file(sector_dir, P_AUX), comm_c + comm_r_last)
    comm_r = ptree.comm_r(comm_c, comm_r_last)
    _say(progress, f"PC2 tree-r-last: comm_r {sealed_cid(comm_r)} ({time.perf_counter() - started:.1f}s)")
    meta.comm_r = comm_r.hex()
    if p.feature is SealFeature.SYNTHETIC:
        count = _write_synthetic_proofs(sector_dir, meta, impl, progress)
        _say(progress, f"PC2 synthetic proofs: {count} challenges ({time.perf_counter() - started:.1f}s)")
    meta.stage = "pc2"
    save_meta(sector_dir, meta)
    if p.feature is SealFeature.SYNTHETIC:    # what C1 needs is in the proofs: the layers go now
        _drop(layer_path(cache_dir(sector_dir), n) for n in range(1, p.layers + 1))
    return PreCommit2Out(meta.hex_field("comm_d"), comm_r, comm_c, comm_r_last, impl.name)


# --- reading a sealed sector back ---------------------------------------------------------------

def tree_r_last_upper(sector_dir, meta: SectorMeta) -> list[bytes]:
    """The stored levels of tree-r-last (levels[kept_from:], root last)."""
    shape = TreeShape.of(meta.seal_proof)
    return read_levels(cache_file(sector_dir, TREE_R_LAST), shape.level_sizes()[shape.kept_from:],
                       "tree-r-last")


def checked_p_aux(sector_dir, meta: SectorMeta, comm_r: bytes | None = None) -> tuple[bytes, bytes]:
    """(comm_c, comm_r_last) from p_aux, checked against comm_r (default: the recorded one)."""
    comm_c, comm_r_last = read_p_aux(sector_dir)
    comm_r = meta.hex_field("comm_r") if comm_r is None else comm_r
    try:
        ok = ptree.comm_r(comm_c, comm_r_last) == comm_r
    except ValueError:
        ok = False
    if not ok:
        raise SectorError(f"sector {meta.sector}: p_aux does not hash to comm_r {comm_r.hex()}")
    return comm_c, comm_r_last


def replica_reader(sector_dir, meta: SectorMeta):
    """A function from a range of nodes to the replica's words there (bytes)."""
    replica = open_words(sealed_path(sector_dir), meta.proof().nodes, "sealed file")

    def read(nodes: range) -> bytes:
        return replica[nodes.start:nodes.stop].tobytes()
    return read


# --- C1 ---------------------------------------------------------------------------------------

class _Opened(NamedTuple):
    """What a sealed, not finalized sector opens to prove challenges."""
    tree_d: list
    tree_c: list
    layers: list
    read: Callable
    upper: list[bytes]
    comm_c: bytes
    comm_r_last: bytes


def _opened(sector_dir, meta: SectorMeta) -> _Opened:
    p, shape = meta.proof(), TreeShape.of(meta.seal_proof)
    comm_c, comm_r_last = checked_p_aux(sector_dir, meta)
    tree_d = mapped_levels(cache_file(sector_dir, TREE_D), [p.nodes >> h for h in
                                                            range(shape.binary_height + 1)], "tree-d")
    tree_c = mapped_levels(cache_file(sector_dir, TREE_C), shape.level_sizes(), "tree-c")
    upper = tree_r_last_upper(sector_dir, meta)
    if tree_d[-1] != meta.hex_field("comm_d") or tree_c[-1] != comm_c or upper[-1] != comm_r_last:
        raise SectorError(f"sector {meta.sector}: a stored tree's root differs from its commitment")
    return _Opened(tree_d, tree_c, _layers(sector_dir, meta), replica_reader(sector_dir, meta), upper,
                   comm_c, comm_r_last)


def _challenge_proofs(meta: SectorMeta, files: _Opened, impl: Backend, nodes: list[int],
                      check: bool) -> list[porep.PoRepChallengeProof]:
    """The opening of every challenged node: data, column and parents' columns, replica."""
    shape = TreeShape.of(meta.seal_proof)
    try:
        replica_paths = impl.tree_r_paths(files.upper, files.read, nodes, shape.arities, check=check)
    except ptree.TreeError as e:
        raise SectorError(f"sector {meta.sector}: the sealed file does not match tree-r-last: {e}") from None
    parents = porep.challenge_parents(meta.proof(), nodes)
    tree_d, tree_c, layers = files.tree_d, files.tree_c, files.layers
    return [porep.PoRepChallengeProof(
        node=node,
        data_leaf=bytes(tree_d[0][node * WORD:(node + 1) * WORD]),
        data_path=merkle.inclusion_path(tree_d, node),
        column=porep.column_opening(layers, tree_c, node),
        parents=[porep.column_opening(layers, tree_c, int(parent)) for parent in parents[i]],
        replica_leaf=files.read(range(node, node + 1)),
        replica_path=porep.siblings_of(replica_paths[i])) for i, node in enumerate(nodes)]


# --- synthetic PoRep's proofs, made at PC2 ------------------------------------------------------
#
# The file holds one msgpack PoRepChallengeProof per synthetic challenge, in challenge order,
# after a header: the magic, the count (u64le) and count + 1 record offsets (u64le, from the
# end of the header). C1 reads the records the seed selects.

_SYNTH_MAGIC = b"zqsynth1"
_SYNTH_BATCH = 2048                        # challenges proven and written at a time
_SYNTH_RECORD_MAX = 1 << 20                # one challenge's openings: about 50 KiB for 32 GiB
_synth_decoder = msgspec.msgpack.Decoder(porep.PoRepChallengeProof)


def _write_synthetic_proofs(sector_dir, meta: SectorMeta, impl: Backend, progress: Progress) -> int:
    p = meta.proof()
    rid, comm_r = meta.hex_field("replica_id"), meta.hex_field("comm_r")
    total = synthetic_count(p.nodes)
    files = _opened(sector_dir, meta)
    within = getattr(progress, "within", None)
    eta = Eta("PC2 synthetic proofs", total)
    encode = msgspec.msgpack.Encoder().encode

    def write(f) -> None:
        header = len(_SYNTH_MAGIC) + 8 + 8 * (total + 1)
        offsets = [0]
        f.seek(header)
        for first in range(0, total, _SYNTH_BATCH):
            nodes = synthetic_challenges(rid, comm_r, p.nodes, first, min(_SYNTH_BATCH, total - first))
            for proof in _challenge_proofs(meta, files, impl, nodes, check=True):
                record = encode(proof)
                f.write(record)
                offsets.append(offsets[-1] + len(record))
            if within is not None and total > _SYNTH_BATCH:
                within(eta.line(first + len(nodes), f" {first + len(nodes)}/{total}"))
        f.seek(0)
        f.write(_SYNTH_MAGIC + total.to_bytes(8, "little") + np.asarray(offsets, "<u8").tobytes())
    write_atomic(cache_file(sector_dir, SYNTH_PROOFS), write)
    return total


def _read_synthetic_proofs(sector_dir, meta: SectorMeta, indexes: list[int]) -> list[porep.PoRepChallengeProof]:
    path = cache_file(sector_dir, SYNTH_PROOFS)
    total = synthetic_count(meta.proof().nodes)
    header = len(_SYNTH_MAGIC) + 8 + 8 * (total + 1)
    try:
        with open(path, "rb") as f:
            head = f.read(header)
            if len(head) != header or head[:8] != _SYNTH_MAGIC or int.from_bytes(head[8:16], "little") != total:
                raise SectorError(f"sector {meta.sector}: {path} is not a synthetic proofs file for it")
            offsets = np.frombuffer(head, "<u8", total + 1, 16)
            sizes = np.diff(offsets.astype(np.int64))      # the file may come from another worker
            if offsets[0] or (sizes <= 0).any() or (sizes > _SYNTH_RECORD_MAX).any() \
                    or header + int(offsets[-1]) != os.fstat(f.fileno()).st_size:
                raise ValueError("its record offsets do not fit the file")
            out = []
            for i in indexes:
                f.seek(header + int(offsets[i]))
                out.append(_synth_decoder.decode(f.read(int(sizes[i]))))
            return out
    except FileNotFoundError:
        raise SectorError(f"sector {meta.sector}: its synthetic proofs are missing: {path}") from None
    except (msgspec.DecodeError, OSError, ValueError) as e:
        raise SectorError(f"sector {meta.sector}: {path} is corrupt: {e}") from None


# --- C1 ---------------------------------------------------------------------------------------

def commit1(sector_dir, seed: bytes | None = None, *, backend: str | Backend = "auto",
            check: bool = True, progress: Progress = None) -> Commit1Out:
    """C1: the vanilla PoRep proof for the challenges `seed` selects (non-interactive
    proofs derive them from comm_r and take no seed; synthetic ones take their proofs from
    the synthetic proofs file PC2 wrote). With `check` (the default) the replica must match
    tree-r-last and the proof must verify, else SectorError."""
    meta = load_meta(sector_dir)
    if meta.stage != "pc2":
        raise SectorError(f"sector {meta.sector} is not ready for Commit1 (stage {meta.stage}"
                          + ("; finalize dropped the layers" if meta.stage == "finalized" else "")
                          + ")")
    p = meta.proof()
    if p.feature is not SealFeature.NON_INTERACTIVE:
        seed = _bytes32(seed, "seed")
    impl = get_backend(backend)
    started = time.perf_counter()
    rid, comm_d, comm_r = (meta.hex_field(n) for n in ("replica_id", "comm_d", "comm_r"))
    challenges = porep.challenges_for(p, rid, seed, comm_r)
    comm_c, comm_r_last = checked_p_aux(sector_dir, meta)
    if p.feature is SealFeature.SYNTHETIC:
        per, total = p.porep_challenges_per_partition, synthetic_count(p.nodes)
        indexes = [i for k in range(p.porep_partitions) for i in synthetic_indexes(rid, seed, total, per, k)]
        proofs = _read_synthetic_proofs(sector_dir, meta, indexes)
    else:
        proofs = _challenge_proofs(meta, _opened(sector_dir, meta), impl,
                                   [node for part in challenges for node in part], check)
    per = p.porep_challenges_per_partition
    proof = porep.PoRepVanillaProof(porep.FORMAT_VERSION, p.id, comm_c, comm_r_last,
                                    [proofs[k:k + per] for k in range(0, len(proofs), per)])
    if check and not porep.verify_vanilla(proof, p, rid, seed, comm_d, comm_r):
        raise SectorError(f"sector {meta.sector}: the PoRep proof does not verify "
                          "(the sector's files are corrupt)")
    _say(progress, f"C1: {len(proofs)} challenges ({time.perf_counter() - started:.1f}s)")
    return Commit1Out(porep.encode_proof(proof), challenges, impl.name)


# --- FIN --------------------------------------------------------------------------------------

def finalize(sector_dir, *, keep_unsealed: bool = False) -> list[str]:
    """FIN: keep the sealed file, tree-r-last's stored rows, p_aux and sector.json (what
    WindowPoSt and unsealing need); drop the layers, tree-c, tree-d, the synthetic proofs
    and, unless `keep_unsealed`, the unsealed copy. Returns the names of the files removed."""
    meta = load_meta(sector_dir)
    if not meta.at_least("pc2"):
        raise SectorError(f"sector {meta.sector} is not sealed yet (stage {meta.stage})")
    # What stays must be whole before anything goes.
    checked_p_aux(sector_dir, meta)
    upper = tree_r_last_upper(sector_dir, meta)
    open_words(sealed_path(sector_dir), meta.proof().nodes, "sealed file")
    if upper[-1] != read_p_aux(sector_dir)[1]:
        raise SectorError(f"sector {meta.sector}: tree-r-last's root differs from p_aux")
    meta.stage = "finalized"
    save_meta(sector_dir, meta)
    cache = cache_dir(sector_dir)
    doomed = [layer_path(cache, layer) for layer in range(1, meta.proof().layers + 1)]
    doomed += [cache / TREE_C, cache / TREE_D, cache / SYNTH_PROOFS]
    doomed += [] if keep_unsealed else [unsealed_path(sector_dir)]
    doomed += [*cache.glob(".*.tmp"), *Path(sector_dir).glob(".*.chunked.tmp")]   # killed writes' leftovers
    scratch = list(Path(sector_dir).glob(".unseal-*"))      # a killed unseal's relabelled layers
    removed = [str(path.relative_to(sector_dir)) for path in [*doomed, *scratch] if path.exists()]
    _drop(doomed)
    for path in scratch:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# --- UNS --------------------------------------------------------------------------------------

def last_layer_key(sector_dir, meta: SectorMeta, scratch: Path, parent_cache_dir,
                   progress: Progress):
    """The last layer's labels (the encoding key): from the layer file, else computed again
    in `scratch` from the replica_id."""
    p = meta.proof()
    cache = cache_dir(sector_dir)
    if meta.stage != "finalized":
        try:
            return open_layers(cache, p.layers, p.nodes)[-1]
        except LabelError:
            pass
    _say(progress, f"UNS: recomputing {p.layers} layers of labels")
    return label_layers(meta.hex_field("replica_id"), Graph.for_proof(p), p.layers, scratch,
                        parent_cache_dir=parent_cache_dir,
                        progress=getattr(progress, "within", None))[-1]


def decoded(nodes: int, words: Callable[[int, int], bytes], impl: Backend, tmp: Path, chunk_bytes: int) -> bytes:
    """The data back, `words(start, stop)` of it at a time (a whole tree-d subtree), written
    to `tmp`; its comm_d. (Unsealing and SnapDeals' decoding.)"""
    span = chunked.plan(chunked.binary_shape(nodes), chunk_bytes).span
    tops = bytearray()
    with open(tmp, "wb") as f:
        for start in range(0, nodes, span):
            data = words(start, start + span)
            f.write(data)
            tops += impl.tree_d(data)[-1]
    return bytes(tops) if len(tops) == WORD else impl.tree_d(bytes(tops))[-1]


def write_data(meta: SectorMeta, piece: int | None, padded: Path, out, chunk_bytes: int) -> int:
    """Write the sector's data from its padded copy to `out` (atomically): the whole
    sector's unpadded bytes, or the payload of piece `piece`; the bytes written."""
    if piece is None:
        region = (0, meta.sector_size, fr32.unpadded_size(meta.sector_size))
    else:
        info = meta.pieces[piece]
        region = (info.offset, info.padded_size, info.payload_size)
    write_atomic(out, _unpadded(padded, *region, chunk_bytes))
    return region[2]


def _unpadded(padded: Path, start: int, size: int, length: int, chunk_bytes: int):
    """A function writing the fr32-unpadded bytes of padded[start:start + size], cut to
    `length`, to a file, a chunk at a time (chunks of whole 128-byte fr32 blocks)."""
    step = max(chunk_bytes // 128, 1) * 128

    def write(f) -> None:
        left = length
        with open(padded, "rb") as src:
            src.seek(start)
            for at in range(0, size, step):
                content = fr32.unpad(src.read(min(step, size - at)))[:left]
                f.write(content)
                left -= len(content)
        if left:
            raise SectorError(f"the unsealed data ends {left} bytes short of the {length} asked for")
    return write


def unseal(sector_dir, out, *, piece: int | None = None, parent_cache_dir=None,
           backend: str | Backend = "auto", chunk_bytes: int = chunked.CHUNK_BYTES,
           progress: Progress = None) -> int:
    """UNS: write the sector's data back to `out` (atomically); returns the bytes written.

    `piece=None` gives the whole sector's unpadded bytes (127/128 of its size), `piece=i`
    the payload of piece i. The result must hash back to comm_d, else SectorError. The
    data goes through a temporary file in the sector directory, `chunk_bytes` at a time."""
    meta = load_meta(sector_dir)
    if not meta.at_least("pc2"):
        raise SectorError(f"sector {meta.sector} is not sealed yet (stage {meta.stage})")
    if meta.update is not None:           # SnapDeals put its data in: decoded with rho
        from zqnode.proofs import snap
        return snap.unseal(sector_dir, out, piece=piece, parent_cache_dir=parent_cache_dir, backend=backend,
                           chunk_bytes=chunk_bytes, progress=progress)
    if piece is not None and not 0 <= piece < len(meta.pieces):
        raise SectorError(f"sector {meta.sector} has {len(meta.pieces)} pieces, no piece {piece}")
    impl = get_backend(backend)
    started = time.perf_counter()
    open_words(sealed_path(sector_dir), meta.proof().nodes, "sealed file")
    scratch = Path(tempfile.mkdtemp(prefix=".unseal-", dir=sector_dir))
    try:
        key = last_layer_key(sector_dir, meta, scratch, parent_cache_dir, progress)
        data = scratch / "data"
        replica = open_words(sealed_path(sector_dir), meta.proof().nodes, "sealed file")

        def words(start: int, stop: int) -> bytes:
            return impl.decode(replica[start:stop], key[start:stop])
        if decoded(meta.proof().nodes, words, impl, data, chunk_bytes) != meta.hex_field("comm_d"):
            raise SectorError(f"sector {meta.sector}: the unsealed data does not hash to comm_d "
                              "(the sealed file is corrupt)")
        length = write_data(meta, piece, data, out, chunk_bytes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _say(progress, f"UNS: {length} bytes ({time.perf_counter() - started:.1f}s)")
    return length




# --- a whole sector ---------------------------------------------------------------------------

class SealedSector(NamedTuple):
    """What seal_sector made in `sector_dir`."""
    sector_dir: Path
    pieces: list[PieceInfo]
    pc1: PreCommit1Out
    pc2: PreCommit2Out
    c1: Commit1Out | None          # None when C1 did not run (no seed)
    proof_file: Path | None        # C1's proof, verified, in sector_dir


def _runs_commit1(proof: int | str, seed: bytes | None) -> bool:
    # A non-interactive proof's challenges need no seed, so it always gets its C1.
    return seed is not None or seal_proof(proof).feature is SealFeature.NON_INTERACTIVE


def seal_steps(proof: int | str, *, data: bool, seed: bytes | None, then_finalize: bool) -> int:
    """How many progress lines seal_sector says with these arguments."""
    # AP, PC1 (tree-d, labels), PC2 (tree-c, tree-r-last, synthetic proofs), C1 (proof,
    # verified), FIN
    synthetic = seal_proof(proof).feature is SealFeature.SYNTHETIC
    return data + 4 + synthetic + 2 * _runs_commit1(proof, seed) + then_finalize


def seal_sector(out, ticket: bytes, *, seal_proof: int | str, miner: int, sector: int, data=None,
                seed: bytes | None = None, then_finalize: bool = False, parent_cache_dir=None,
                backend: str | Backend = "auto", procs: int = 1, progress: Progress = None) -> SealedSector:
    """AP (with `data`, a path), PC1, PC2, C1 (with `seed`; always for a non-interactive
    proof), its proof written to commit1.proof and checked by porep.verify_seal, and FIN
    (with `then_finalize`), into `out`: a directory that must not exist or be empty.

    The sector is built in a hidden directory beside `out` and renamed to it at the end,
    so a failure (SectorError when the proof does not verify) leaves nothing behind."""
    with_c1 = _runs_commit1(seal_proof, seed)
    impl = get_backend(backend)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.sealing-{secrets.token_hex(4)}"
    work.mkdir()                               # (not mkdtemp: its 0700 would stay on `out`)
    try:
        pieces = []
        if data is not None:
            info = add_piece(work, data, seal_proof=seal_proof, miner=miner, sector=sector,
                             backend=impl)
            _say(progress, f"AP: piece {info.cid()} ({info.payload_size} bytes)")
            pieces.append(info)
        pc1 = precommit1(work, ticket, seal_proof=seal_proof, miner=miner, sector=sector,
                         parent_cache_dir=parent_cache_dir, backend=impl, procs=procs, progress=progress)
        pc2 = precommit2(work, backend=impl, procs=procs, progress=progress)
        c1 = proof_file = None
        if with_c1:
            c1 = commit1(work, seed, backend=impl, progress=progress)
            write_atomic(work / "commit1.proof", c1.proof)
            proof_file = target / "commit1.proof"
            verified = porep.verify_seal(seal_proof=seal_proof, miner=miner, sector=sector,
                                         ticket=ticket, seed=seed, comm_d=pc2.comm_d,
                                         comm_r=pc2.comm_r, proof=c1.proof)
            _say(progress, f"C1 proof verified: {verified}")
            if not verified:
                raise SectorError("the PoRep proof does not verify")
        if then_finalize:
            finalize(work)
            _say(progress, "FIN: layers, tree-c, tree-d and the unsealed copy dropped")
        if target.exists():
            target.rmdir()                     # only an empty one: a full one raises
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return SealedSector(target, pieces, pc1, pc2, c1, proof_file)
