"""SnapDeals on sector directories (proofs.sector): a committed-capacity sector's replica,
the "sector key", takes deal data without sealing again (proofs.update has the math).

    encode(sealed_dir, data, out_dir)   a new sector directory: the data as its unsealed
                                        file and tree-d (comm_d_new), the new replica as
                                        its sealed file with tree-r-last and p_aux
                                        (comm_r_new); comm_c stays the CC sector's
    encode_staged(sealed_dir, out_dir)  the same, the pieces added to out_dir already (RU)
    decode(updated_dir, sealed_dir, out)   the data back, checked against comm_d_new
    prove(updated_dir, sealed_dir)      the vanilla update proof of every partition
    remove_data(updated_dir, out_dir)   the sector key back (a replica file), checked
                                        against the CC sector's comm_r
    release_key(sector_dir)             DIR/update becomes DIR, the CC replica goes
    unseal(sector_dir, out)             the data back once the CC replica is gone: a CC
                                        sector's key is its last layer of labels

The updated directory records `update` in its sector.json (the update proof type and the
CC sector's comm_r) and is otherwise a sealed sector: WindowPoSt proves it as it proves any
sector, against comm_r_new. Work goes a chunk at a time (proofs.chunked).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from zqnode.proofs import chunked, ptree, update
from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.cid import piece_cid_v1, sealed_cid
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.seal import (
    Progress, add_piece, checked_p_aux, decoded, last_layer_key, replica_reader, tree_r_last_upper, write_data)
from zqnode.proofs.sector import (
    P_AUX, TREE_D, UPDATE_DIR, SectorError, SectorMeta, TreeShape, UpdateMeta, cache_file, load_meta, mapped_levels,
    open_words, save_meta, sealed_path)
from zqnode.proofs.files import write_atomic


class Encoded(NamedTuple):
    update_proof: update.UpdateProof
    comm_r_old: bytes
    comm_d_new: bytes
    comm_r_new: bytes
    comm_c: bytes
    comm_r_last_new: bytes

    def record(self) -> dict:
        """What `zqnode proofs snap encode --json` prints: commitments as CIDs."""
        return {"update_proof": self.update_proof.name, "comm_r_old": sealed_cid(self.comm_r_old),
                "comm_d_new": piece_cid_v1(self.comm_d_new), "comm_r_new": sealed_cid(self.comm_r_new)}


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _sector_key(sealed_dir) -> tuple[SectorMeta, bytes, bytes]:
    """The CC sector: its meta, comm_c and comm_r_last (checked against its comm_r)."""
    meta = load_meta(sealed_dir)
    if meta.update is not None:
        raise SectorError(f"sector {meta.sector} in {sealed_dir} is an updated sector: the sector key is "
                          "the CC sector it was made from")
    if not meta.at_least("pc2"):
        raise SectorError(f"sector {meta.sector} is not sealed yet (stage {meta.stage})")
    open_words(sealed_path(sealed_dir), meta.proof().nodes, "sealed file")
    comm_c, comm_r_last = checked_p_aux(sealed_dir, meta)
    return meta, comm_c, comm_r_last


def encode(sealed_dir, data, out_dir, *, backend: str | Backend = "auto", procs: int = 1,
           chunk_bytes: int = chunked.CHUNK_BYTES, progress: Progress = None) -> Encoded:
    """Put `data` (a piece: a path or bytes, fr32-padded here) into a copy of the CC sector
    in `sealed_dir`, made in `out_dir` (which must not hold a sector yet)."""
    old = load_meta(sealed_dir)
    if (Path(out_dir) / "sector.json").exists():
        raise SectorError(f"{out_dir} already holds a sector")
    add_piece(out_dir, data, seal_proof=old.seal_proof, miner=old.miner, sector=old.sector, backend=backend)
    return encode_staged(sealed_dir, out_dir, backend=backend, procs=procs, chunk_bytes=chunk_bytes,
                         progress=progress)


def encode_staged(sealed_dir, out_dir, *, backend: str | Backend = "auto", procs: int = 1,
                  chunk_bytes: int = chunked.CHUNK_BYTES, progress: Progress = None) -> Encoded:
    """The update of the CC sector in `sealed_dir` with the pieces added to `out_dir`
    (proofs.seal.add_piece, as the RU task finds them). Run again on an encoded directory,
    it returns what it recorded."""
    old, comm_c, _ = _sector_key(sealed_dir)
    p = update.for_sector_size(old.sector_size)
    meta = load_meta(out_dir)
    if (meta.miner, meta.sector, meta.sector_size) != (old.miner, old.sector, old.sector_size):
        raise SectorError(f"{out_dir} holds sector {meta.sector} of miner {meta.miner}, not the CC sector's")
    if meta.update is not None:
        if meta.update.comm_r_old != old.comm_r:
            raise SectorError(f"{out_dir} updates another CC sector ({meta.update.comm_r_old[:16]})")
        _, comm_r_last = checked_p_aux(out_dir, meta)
        return Encoded(p, old.hex_field("comm_r"), meta.hex_field("comm_d"), meta.hex_field("comm_r"), comm_c,
                       comm_r_last)
    impl = get_backend(backend)
    started = time.perf_counter()
    open_words(Path(out_dir) / "unsealed", p.nodes, "unsealed file")
    with chunked.tree_d(out_dir, p.nodes, backend=impl, procs=procs, chunk_bytes=chunk_bytes) as comm_d_new:
        pass
    comm_r_old = old.hex_field("comm_r")
    _say(progress, f"SNAP tree-d: comm_d_new {piece_cid_v1(comm_d_new)} ({time.perf_counter() - started:.1f}s)")
    rho = update.rhos(p, comm_d_new, comm_r_old)
    comm_r_last_new = chunked.updated_replica(out_dir, sealed_path(sealed_dir), old.seal_proof, rho, p.high_shift,
                                              backend=impl, procs=procs, chunk_bytes=chunk_bytes,
                                              progress=progress)
    write_atomic(cache_file(out_dir, P_AUX), comm_c + comm_r_last_new)
    comm_r_new = update.comm_r(comm_c, comm_r_last_new)
    meta.comm_d, meta.comm_r, meta.stage = comm_d_new.hex(), comm_r_new.hex(), "pc2"
    meta.ticket, meta.replica_id = old.ticket, old.replica_id
    meta.update = UpdateMeta(update_proof=p.id, comm_r_old=comm_r_old.hex())
    save_meta(out_dir, meta)
    _say(progress, f"SNAP encode: comm_r_new {sealed_cid(comm_r_new)} ({time.perf_counter() - started:.1f}s)")
    return Encoded(p, comm_r_old, comm_d_new, comm_r_new, comm_c, comm_r_last_new)


def _updated(sector_dir) -> tuple[SectorMeta, update.UpdateProof, list[int], bytes]:
    """An updated sector's meta, update proof type, rho and comm_c (its p_aux checked)."""
    meta = load_meta(sector_dir)
    if meta.update is None:
        raise SectorError(f"sector {meta.sector} in {sector_dir} is not an updated sector")
    comm_c, _ = checked_p_aux(sector_dir, meta)
    p = update.update_proof(meta.update.update_proof)
    return meta, p, update.rhos(p, meta.hex_field("comm_d"), bytes.fromhex(meta.update.comm_r_old)), comm_c


def _pair(updated_dir, sealed_dir) -> tuple[SectorMeta, SectorMeta, update.UpdateProof, list[int], bytes]:
    """(updated meta, CC meta, proof type, rho, comm_c), each checked against the other."""
    meta, p, rho, _ = _updated(updated_dir)
    old, comm_c, _ = _sector_key(sealed_dir)
    if old.comm_r != meta.update.comm_r_old:
        raise SectorError(f"{sealed_dir} holds the CC sector of comm_r {sealed_cid(old.hex_field('comm_r'))}; "
                          f"sector {meta.sector} was updated from {sealed_cid(bytes.fromhex(meta.update.comm_r_old))}")
    return meta, old, p, rho, comm_c


def decode(updated_dir, sealed_dir, out, *, piece: int | None = None, backend: str | Backend = "auto",
           chunk_bytes: int = chunked.CHUNK_BYTES, progress: Progress = None) -> int:
    """The data back to `out` (as seal.unseal writes it: the whole sector unpadded, or the
    payload of piece `piece`), checked against comm_d_new; the bytes written."""
    meta, _, p, rho, _ = _pair(updated_dir, sealed_dir)
    key = open_words(sealed_path(sealed_dir), p.nodes, "sector key")
    with tempfile.TemporaryDirectory(prefix=".unseal-", dir=updated_dir) as scratch:   # finalize drops a killed one's
        return _decode(updated_dir, meta, p, key, rho, out, piece, get_backend(backend), Path(scratch),
                       chunk_bytes, progress)


def unseal(sector_dir, out, *, piece: int | None = None, parent_cache_dir=None, backend: str | Backend = "auto",
           chunk_bytes: int = chunked.CHUNK_BYTES, progress: Progress = None) -> int:
    """UNS of an updated sector alone (its CC replica released): the sector key of a CC
    sector is its last layer of labels (the data was zero), computed again from the
    replica_id, then the data decoded as `decode` does."""
    meta, p, rho, _ = _updated(sector_dir)
    with tempfile.TemporaryDirectory(prefix=".unseal-", dir=sector_dir) as scratch:
        key = last_layer_key(sector_dir, meta, Path(scratch), parent_cache_dir, progress)
        return _decode(sector_dir, meta, p, key, rho, out, piece, get_backend(backend), Path(scratch),
                       chunk_bytes, progress)


def _decode(sector_dir, meta: SectorMeta, p: update.UpdateProof, key, rho: list[int], out, piece: int | None, impl: Backend,
            scratch: Path, chunk_bytes: int, progress: Progress) -> int:
    """The data of the updated sector in `sector_dir` back to `out` with its sector key's
    words `key`, checked against comm_d_new; the bytes written."""
    if piece is not None and not 0 <= piece < len(meta.pieces):
        raise SectorError(f"sector {meta.sector} has {len(meta.pieces)} pieces, no piece {piece}")
    replica = open_words(sealed_path(sector_dir), p.nodes, "sealed file")
    inverse = [pow(r, -1, update.P) for r in rho]

    def words(start: int, stop: int) -> bytes:
        difference = impl.decode(replica[start:stop], key[start:stop])
        return impl.update_encode(bytes(len(difference)), difference, inverse, p.high_shift, start)
    data = scratch / "data"
    if decoded(p.nodes, words, impl, data, chunk_bytes) != meta.hex_field("comm_d"):
        raise SectorError(f"sector {meta.sector}: the decoded data does not hash to comm_d_new "
                          "(the replica or the sector key is corrupt)")
    length = write_data(meta, piece, data, out, chunk_bytes)
    _say(progress, f"SNAP decode: {length} bytes")
    return length


def remove_data(updated_dir, out, *, backend: str | Backend = "auto",
                chunk_bytes: int = chunked.CHUNK_BYTES) -> bytes:
    """The sector key (the CC replica) back from the updated sector alone, written to `out`;
    its comm_r_last, checked: H2(comm_c, it) must be the CC sector's comm_r."""
    meta, p, rho, comm_c = _updated(updated_dir)
    negated = [update.P - r for r in rho]
    replica = open_words(sealed_path(updated_dir), p.nodes, "sealed file")
    data = open_words(Path(updated_dir) / "unsealed", p.nodes, "unsealed file")
    impl = get_backend(backend)
    step = max(chunk_bytes // WORD, 1)

    def write(f) -> None:
        for start in range(0, p.nodes, step):
            stop = min(start + step, p.nodes)
            f.write(impl.update_encode(replica[start:stop], data[start:stop], negated, p.high_shift, start))
    write_atomic(out, write)
    key = open_words(out, p.nodes, "sector key")
    comm_r_last = bytes(impl.tree_r_last(key, TreeShape.of(meta.seal_proof).arities)[-1])
    if update.comm_r(comm_c, comm_r_last) != bytes.fromhex(meta.update.comm_r_old):
        Path(out).unlink()
        raise SectorError(f"sector {meta.sector}: the sector key taken out does not hash to the CC sector's comm_r")
    return comm_r_last


def _opener(sector_dir, meta: SectorMeta, impl: Backend) -> update.Opener:
    """Leaves and tree-r-last paths from a sector's stored tree and its sealed file."""
    shape = TreeShape.of(meta.seal_proof)
    upper, read = tree_r_last_upper(sector_dir, meta), replica_reader(sector_dir, meta)

    def open_(nodes: list[int]):
        try:
            paths = impl.tree_r_paths(upper, read, nodes, shape.arities, check=True)
        except ptree.TreeError as e:
            raise SectorError(f"sector {meta.sector} in {sector_dir}: the sealed file does not match "
                              f"tree-r-last: {e}") from None
        return [(read(range(n, n + 1)), [list(step.siblings) for step in path]) for n, path in zip(nodes, paths)]
    return open_


def prove(updated_dir, sealed_dir, *, backend: str | Backend = "auto",
          progress: Progress = None) -> update.UpdateVanillaProof:
    """The vanilla proof of every partition (it verifies, or SectorError)."""
    meta, old, p, _, comm_c = _pair(updated_dir, sealed_dir)
    impl = get_backend(backend)
    tree_d = mapped_levels(cache_file(updated_dir, TREE_D), [p.nodes >> h for h in range(p.node_bits + 1)],
                           "tree-d")
    if bytes(tree_d[-1]) != meta.hex_field("comm_d"):
        raise SectorError(f"sector {meta.sector}: tree-d's root is not comm_d_new")
    _, comm_r_last_old = checked_p_aux(sealed_dir, old)
    _, comm_r_last_new = checked_p_aux(updated_dir, meta)
    old_open, new_open = _opener(sealed_dir, old, impl), _opener(updated_dir, meta, impl)
    parts = []
    for k in range(p.partitions):
        parts.append(update.prove_partition(p, k, comm_c=comm_c, comm_r_last_old=comm_r_last_old,
                                            comm_r_last_new=comm_r_last_new, tree_d=tree_d,
                                            old=old_open, new=new_open))
        _say(progress, f"SNAP prove: partition {k + 1}/{p.partitions}")
    proof = update.UpdateVanillaProof(update.FORMAT_VERSION, p.id, parts)
    if not update.verify(proof, update_proof=p.id, comm_r_old=old.hex_field("comm_r"),
                         comm_d_new=meta.hex_field("comm_d"), comm_r_new=meta.hex_field("comm_r")):
        raise SectorError(f"sector {meta.sector}: its update proof does not verify (a file is corrupt)")
    return proof


def release_key(sector_dir, comm_r_new: bytes | None = None) -> bool:
    """ReleaseSectorKey: the update directory (of `comm_r_new`, when given: the chain's)
    becomes the sector's directory and the CC replica goes. By renames, so a crash leaves
    either layout or a state this finishes when run again (sector.holding finds the
    replica in each); False when there was nothing left to do."""
    here = Path(sector_dir)
    staged = here.with_name(f".{here.name}.updated")
    key = here.with_name(f".{here.name}.key")
    if here.is_dir() and (here / UPDATE_DIR).is_dir():
        meta = load_meta(here / UPDATE_DIR)
        if meta.update is None or meta.update.comm_r_old != load_meta(here).comm_r:
            raise SectorError(f"{here / UPDATE_DIR} is not an update of the sector in {here}")
        if comm_r_new is not None and meta.comm_r != comm_r_new.hex():
            raise SectorError(f"{here / UPDATE_DIR} is the replica of {meta.comm_r[:16]}, not of the chain's "
                              f"{comm_r_new.hex()[:16]}: the sector key stays")
        os.replace(here / UPDATE_DIR, staged)
    if staged.is_dir():
        if here.is_dir():
            os.replace(here, key)
        os.replace(staged, here)
    if key.is_dir():
        shutil.rmtree(key)
        return True
    if load_meta(here).update is None:
        raise SectorError(f"sector in {here} was never updated: it has no update directory to take")
    return False
