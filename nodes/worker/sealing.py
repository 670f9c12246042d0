"""The worker's real task table: the sealing and proving functions of proofs/, one per
task type, each on the sector's directory under the worker's repo. (GET is not here:
moving files needs the bus, so the worker runs it itself; see nodes.worker.fetch.)

Every function may run again after a crash (the worker re-runs a call whose process
died): AP finds a piece it already added, PC1 with the recorded ticket returns the
recorded commitments, the other stages redo their work over the same files. PC1 with
another ticket (the old one expired) seals the replica again; PC2 and C1 refuse files
sealed with another ticket than theirs.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from zqnode.nodes.wire import params as P
from zqnode.nodes.sector_dirs import sector_dir_name
from zqnode.nodes.worker.task import TaskContext
from zqnode.proofs import post, seal, snap
from zqnode.proofs import update as snap_update
from zqnode.proofs.merkle import zero_commitment
from zqnode.proofs.sector import UPDATE_DIR, load_meta, meta_path


def add_piece(ctx: TaskContext, p: P.APParams) -> P.APResult:
    where = ctx.sector_dir / UPDATE_DIR if p.update else ctx.sector_dir
    if p.update and p.index == 0 and meta_path(where).exists() and load_meta(where).update is not None:
        shutil.rmtree(where)                       # an upgrade aborted after its replica: a new one
    if meta_path(where).exists():
        pieces = load_meta(where).pieces
        if p.index < len(pieces):                  # added before the crash
            piece = pieces[p.index]
            if piece.payload_size != len(p.piece):
                raise seal.SectorError(f"piece {p.index} of sector {ctx.number} is another piece "
                                       f"({piece.payload_size} bytes, not {len(p.piece)})")
            return P.APResult(comm_p=bytes.fromhex(piece.comm_p), payload_size=piece.payload_size,
                              padded_size=piece.padded_size, offset=piece.offset)
        if p.index > len(pieces):
            raise seal.SectorError(f"sector {ctx.number} has {len(pieces)} pieces: piece "
                                   f"{p.index} comes too early")
    elif p.index != 0:
        raise seal.SectorError(f"sector {ctx.number} has no pieces: piece {p.index} comes too early")
    if p.update:
        _cc_sector(ctx)
    info = seal.add_piece(where, p.piece, seal_proof=p.seal_proof, miner=ctx.miner,
                          sector=ctx.number, backend=ctx.backend)
    return P.APResult(comm_p=info.comm_p, payload_size=info.payload_size,
                      padded_size=info.padded_size, offset=info.offset)


def precommit1(ctx: TaskContext, p: P.PC1Params) -> P.PC1Result:
    if meta_path(ctx.sector_dir).exists():
        meta = load_meta(ctx.sector_dir)
        if meta.at_least("pc1") and meta.ticket == p.ticket.hex():
            return P.PC1Result(comm_d=meta.hex_field("comm_d"), replica_id=meta.hex_field("replica_id"))
    out = seal.precommit1(ctx.sector_dir, p.ticket, seal_proof=p.seal_proof, miner=ctx.miner,
                          sector=ctx.number, parent_cache_dir=ctx.parent_cache, backend=ctx.backend,
                          procs=ctx.cores)
    return P.PC1Result(comm_d=out.comm_d, replica_id=out.replica_id)


def _sealed_with(ctx: TaskContext, ticket: bytes) -> None:
    """SectorError unless the sector's replica is (being) sealed with `ticket` (b"": any)."""
    meta = load_meta(ctx.sector_dir)
    if ticket and meta.ticket != ticket.hex():
        raise seal.SectorError(f"sector {ctx.number} is sealed with ticket {meta.ticket[:16] or 'none'}"
                               f", not {ticket.hex()[:16]}: PreCommit1 must run with it first")


def precommit2(ctx: TaskContext, p: P.PC2Params) -> P.PC2Result:
    _sealed_with(ctx, p.ticket)
    out = seal.precommit2(ctx.sector_dir, backend=ctx.backend, procs=ctx.cores)
    return P.PC2Result(comm_d=out.comm_d, comm_r=out.comm_r, comm_c=out.comm_c,
                       comm_r_last=out.comm_r_last)


def commit1(ctx: TaskContext, p: P.C1Params) -> P.C1Result:
    _sealed_with(ctx, p.ticket)
    out = seal.commit1(ctx.sector_dir, p.seed, backend=ctx.backend)
    return P.C1Result(proof=out.proof, challenges=out.challenges)


def finalize(ctx: TaskContext, p: P.FINParams) -> P.FINResult:
    return P.FINResult(removed=seal.finalize(ctx.sector_dir, keep_unsealed=p.keep_unsealed))


def unseal(ctx: TaskContext, p: P.UNSParams) -> P.UNSResult:
    with tempfile.TemporaryDirectory(dir=ctx.sector_dir) as scratch:
        out = Path(scratch) / "data"
        seal.unseal(ctx.sector_dir, out, piece=p.piece, parent_cache_dir=ctx.parent_cache,
                    backend=ctx.backend)
        return P.UNSResult(data=out.read_bytes())


# -- SnapDeals: the update in DIR/update until the CC replica (the sector key) is released ----------

def _cc_sector(ctx: TaskContext):
    """The CC sector's meta; SectorError when it holds data (its CommD is not zero)."""
    meta = load_meta(ctx.sector_dir)
    if meta.update is not None or meta.comm_d != zero_commitment(meta.sector_size).hex():
        raise seal.SectorError(f"sector {ctx.number} is not a committed-capacity sector: it has data")
    return meta


def replica_update(ctx: TaskContext, p: P.RUParams) -> P.RUResult:
    if _cc_sector(ctx).comm_r != p.comm_r_old.hex():
        raise seal.SectorError(f"sector {ctx.number}'s replica is not the CC sector of comm_r {p.comm_r_old.hex()[:16]}")
    out = snap.encode_staged(ctx.sector_dir, ctx.sector_dir / UPDATE_DIR, backend=ctx.backend, procs=ctx.cores)
    return P.RUResult(comm_r_new=out.comm_r_new, comm_d_new=out.comm_d_new)


def prove_replica_update(ctx: TaskContext, p: P.PR1Params) -> P.PR1Result:
    update = ctx.sector_dir / UPDATE_DIR
    if load_meta(update).comm_r != p.comm_r_new.hex():
        raise seal.SectorError(f"sector {ctx.number}'s update is not the replica of comm_r {p.comm_r_new.hex()[:16]}")
    return P.PR1Result(proof=snap_update.encode_proof(snap.prove(update, ctx.sector_dir, backend=ctx.backend)))


def finalize_replica_update(ctx: TaskContext, p: P.FRUParams) -> P.FINResult:
    if p.drop_update:
        if load_meta(ctx.sector_dir).update is not None:
            raise seal.SectorError(f"sector {ctx.number}'s update is its replica now: it cannot be dropped")
        shutil.rmtree(ctx.sector_dir / UPDATE_DIR, ignore_errors=True)
        return P.FINResult(removed=[UPDATE_DIR])
    if p.release_key:
        snap.release_key(ctx.sector_dir, p.comm_r_new)
        return P.FINResult(removed=["sealed (the sector key)"])
    update = ctx.sector_dir / UPDATE_DIR
    if not update.is_dir() and load_meta(ctx.sector_dir).update is not None:
        return P.FINResult(removed=[])             # released already (a re-run)
    return P.FINResult(removed=[f"{UPDATE_DIR}/{name}" for name in
                                seal.finalize(update, keep_unsealed=p.keep_unsealed)])


def window_post(ctx: TaskContext, p: P.WDPParams) -> P.WDPResult:
    sectors_root = ctx.sector_dir.parent
    refs = [post.SectorRef(number, str(sectors_root / sector_dir_name(ctx.miner, number)), comm_r)
            for number, comm_r in p.sectors]
    randomness = post.canonical_randomness(p.randomness)     # the chain's raw draw, masked
    out = post.generate_window_post(p.seal_proof, randomness, refs, backend=ctx.backend)
    return P.WDPResult(partitions=[P.WDPPartition(index=part.index, sectors=part.sectors,
                                                  proof=part.proof) for part in out.partitions],
                       skipped=out.skipped)


TASKS = {"AP": add_piece, "PC1": precommit1, "PC2": precommit2, "C1": commit1,
         "FIN": finalize, "UNS": unseal, "WDP": window_post,
         "RU": replica_update, "PR1": prove_replica_update, "FRU": finalize_replica_update}
