"""zqnode's message parameters (nodes/chain/messages.py, what the sealing node and the
poster send over the bus) as the builtin miner actor's (filecoin/methods.py), both ways:
the chain-watcher sends ours to a Lotus node as the actor's, and the devnet's Lotus API
takes the actor's as ours.

zqnode's single PreCommitSector and ProveCommitSector go out as one-sector batches
(the actor no longer dispatches methods 6 and 7). The devnet has no market, so no deals,
pieces or claims; the actor's fields for them are empty, and a message that carries
any is refused here."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.filecoin import dagcbor, methods as F
from zqnode.nodes.chain.filecoin.dagcbor import BitField, CborError, Cid
from zqnode.proofs import cid as cids
from zqnode.proofs.merkle import zero_commitment
from zqnode.proofs.params import seal_proof

ADDRESSED = 25_000                   # builtin-actors' AddressedSectorsMax (in one message)
DECLARATIONS = 3000                  # builtin-actors' DeclarationsMax


class ParamsError(ValueError):
    """Parameters zqnode cannot send, or actor parameters the devnet does not take."""


def _declarations(decls, kind=F.SectorDeclaration):
    return [kind(deadline=d.deadline, partition=d.partition, sectors=BitField.of(d.sectors)) for d in decls]


def _addressed(bitfields) -> None:
    """The actor's limit on the sectors one message addresses, checked on the runs."""
    total = sum(len(b) for b in bitfields)
    if total > ADDRESSED:
        raise ParamsError(f"the message addresses {total} sectors, over the actor's {ADDRESSED}")


def _ours(decls) -> list[M.SectorDeclaration]:
    if len(decls) > DECLARATIONS:
        raise ParamsError(f"{len(decls)} declarations, over the actor's {DECLARATIONS}")
    _addressed(d.sectors for d in decls)
    return [M.SectorDeclaration(deadline=d.deadline, partition=d.partition,
                                sectors=d.sectors.members(ADDRESSED)) for d in decls]


def _precommit(p: M.PreCommitSectorParams) -> F.SectorPreCommitInfo:
    return F.SectorPreCommitInfo(seal_proof=p.seal_proof, sector_number=p.sector_number,
                                 sealed_cid=Cid.parse(p.sealed_cid), seal_rand_epoch=p.seal_rand_epoch,
                                 deal_ids=[], expiration=p.expiration, unsealed_cid=Cid.parse(p.unsealed_cid))


def to_actor(params, post_proof: int = 0) -> tuple[int, msgspec.Struct]:
    """(method number, the actor's parameters) of one of zqnode's parameter structs.
    `post_proof` is the miner's WindowPoSt proof type (SubmitWindowedPoSt names it)."""
    if isinstance(params, M.PreCommitSectorParams):
        params = M.PreCommitSectorBatch2Params(sectors=[params])
    if isinstance(params, M.ProveCommitSectorParams):
        params = M.ProveCommitSectors3Params(
            sector_activations=[M.SectorActivationManifest(sector_number=params.sector_number)],
            sector_proofs=[params.proof])
    match params:
        case M.PreCommitSectorBatch2Params():
            return F.PRE_COMMIT_SECTOR_BATCH2, F.PreCommitSectorBatchParams2(
                sectors=[_precommit(p) for p in params.sectors])
        case M.ProveCommitSectors3Params():
            return F.PROVE_COMMIT_SECTORS3, F.ProveCommitSectors3Params(
                sector_activations=[F.SectorActivationManifest(sector_number=a.sector_number, pieces=[])
                                    for a in params.sector_activations],
                sector_proofs=list(params.sector_proofs), aggregate_proof=params.aggregate_proof,
                aggregate_proof_type=params.aggregate_proof_type,
                require_activation_success=params.require_activation_success,
                require_notification_success=params.require_notification_success)
        case M.ProveReplicaUpdates3Params():
            return F.PROVE_REPLICA_UPDATES3, F.ProveReplicaUpdates3Params(
                sector_updates=[F.SectorUpdateManifest(
                    sector=u.sector, deadline=u.deadline, partition=u.partition,
                    new_sealed_cid=Cid.parse(u.new_sealed_cid),
                    pieces=[F.PieceActivationManifest(cid=Cid.parse(x.cid), size=x.size, verified_allocation_key=None,
                                                      notify=[]) for x in u.pieces]) for u in params.sector_updates],
                sector_proofs=list(params.sector_proofs), aggregate_proof=b"",
                update_proofs_type=params.update_proofs_type, aggregate_proof_type=None,
                require_activation_success=params.require_activation_success,
                require_notification_success=False)
        case M.SubmitWindowedPoStParams():
            return F.SUBMIT_WINDOWED_POST, F.SubmitWindowedPoStParams(
                deadline=params.deadline,
                partitions=[F.PoStPartition(index=p.index, skipped=BitField.of(p.skipped)) for p in params.partitions],
                proofs=[F.PoStProof(post_proof=post_proof, proof_bytes=b) for b in params.proofs],
                chain_commit_epoch=params.chain_commit_epoch, chain_commit_rand=params.chain_commit_rand)
        case M.DeclareFaultsParams():
            return F.DECLARE_FAULTS, F.DeclareFaultsParams(faults=_declarations(params.faults))
        case M.DeclareFaultsRecoveredParams():
            return F.DECLARE_FAULTS_RECOVERED, F.DeclareFaultsRecoveredParams(
                recoveries=_declarations(params.recoveries))
        case M.TerminateSectorsParams():
            return F.TERMINATE_SECTORS, F.TerminateSectorsParams(terminations=_declarations(params.terminations))
        case M.ExtendSectorExpiration2Params():
            return F.EXTEND_SECTOR_EXPIRATION2, F.ExtendSectorExpiration2Params(extensions=[
                F.ExpirationExtension2(deadline=x.deadline, partition=x.partition, sectors=BitField.of(x.sectors),
                                       sectors_with_claims=[], new_expiration=x.new_expiration)
                for x in params.extensions])
    raise ParamsError(f"{type(params).__name__} has no actor method")


def from_actor(method: int, data: bytes):
    """zqnode's parameters from the actor method `method`'s DAG-CBOR parameters."""
    kinds = F.METHODS.get(method)
    if kinds is None:
        raise ParamsError(f"the devnet's miner actor has no method {method} "
                          f"(it takes {', '.join(str(m) for m in sorted(F.METHODS))})")
    try:
        p = dagcbor.decode(data, kinds[0])
        return _from_actor(p)
    except (CborError, cids.CidError, msgspec.ValidationError) as e:
        raise ParamsError(f"bad parameters for method {method}: {e}") from None


def _cid_text(cid: Cid | None, what: str) -> str:
    if cid is None:
        raise ParamsError(f"{what} is missing")
    return str(cid)


def _from_actor(p):
    match p:
        case F.PreCommitSectorBatchParams2():
            if any(s.deal_ids for s in p.sectors):
                raise ParamsError("the devnet has no market: PreCommits carry no deal ids")
            return M.PreCommitSectorBatch2Params(sectors=[M.PreCommitSectorParams(
                sector_number=s.sector_number, seal_proof=s.seal_proof, sealed_cid=str(s.sealed_cid),
                unsealed_cid=str(s.unsealed_cid) if s.unsealed_cid is not None else _zero_comm_d(s.seal_proof),
                seal_rand_epoch=s.seal_rand_epoch, expiration=s.expiration) for s in p.sectors])
        case F.ProveCommitSectors3Params():
            if any(a.pieces for a in p.sector_activations):
                raise ParamsError("the devnet has no market: sector activations carry no pieces")
            return M.ProveCommitSectors3Params(
                sector_activations=[M.SectorActivationManifest(sector_number=a.sector_number)
                                    for a in p.sector_activations],
                sector_proofs=list(p.sector_proofs), aggregate_proof=p.aggregate_proof,
                aggregate_proof_type=p.aggregate_proof_type,
                require_activation_success=p.require_activation_success,
                require_notification_success=p.require_notification_success)
        case F.ProveReplicaUpdates3Params():
            pieces = [x for u in p.sector_updates for x in u.pieces]
            if any(x.verified_allocation_key is not None or x.notify for x in pieces):
                raise ParamsError("the devnet has no market or verified registry: pieces carry no "
                                  "allocation and notify no one")
            if p.aggregate_proof or p.aggregate_proof_type is not None:
                raise ParamsError("the devnet takes one update proof per sector, no aggregate")
            return M.ProveReplicaUpdates3Params(
                sector_updates=[M.SectorUpdateManifest(
                    sector=u.sector, deadline=u.deadline, partition=u.partition,
                    new_sealed_cid=_cid_text(u.new_sealed_cid, "NewSealedCID"),
                    pieces=[M.PieceManifest(cid=str(x.cid), size=x.size) for x in u.pieces])
                    for u in p.sector_updates],
                sector_proofs=list(p.sector_proofs), update_proofs_type=p.update_proofs_type,
                require_activation_success=p.require_activation_success)
        case F.SubmitWindowedPoStParams():
            _addressed(x.skipped for x in p.partitions)
            partitions = [M.PoStPartition(index=x.index, skipped=x.skipped.members(ADDRESSED))
                          for x in p.partitions]
            return M.SubmitWindowedPoStParams(deadline=p.deadline, partitions=partitions,
                                              proofs=[x.proof_bytes for x in p.proofs],
                                              chain_commit_epoch=p.chain_commit_epoch,
                                              chain_commit_rand=p.chain_commit_rand)
        case F.DeclareFaultsParams():
            return M.DeclareFaultsParams(faults=_ours(p.faults))
        case F.DeclareFaultsRecoveredParams():
            return M.DeclareFaultsRecoveredParams(recoveries=_ours(p.recoveries))
        case F.TerminateSectorsParams():
            return M.TerminateSectorsParams(terminations=_ours(p.terminations))
        case F.ExtendSectorExpiration2Params():
            if any(x.sectors_with_claims for x in p.extensions):
                raise ParamsError("the devnet has no verified claims: extensions carry none")
            if len(p.extensions) > DECLARATIONS:
                raise ParamsError(f"{len(p.extensions)} extensions, over the actor's {DECLARATIONS}")
            _addressed(x.sectors for x in p.extensions)
            return M.ExtendSectorExpiration2Params(extensions=[M.ExpirationExtension2(
                deadline=x.deadline, partition=x.partition, sectors=x.sectors.members(ADDRESSED),
                new_expiration=x.new_expiration) for x in p.extensions])
    raise ParamsError(f"{type(p).__name__} is not taken here")


def _zero_comm_d(proof: int) -> str:
    """A CC sector's CommD (the actor's CompactCommD: null means this)."""
    try:
        return cids.piece_cid_v1(zero_commitment(seal_proof(proof).sector_size))
    except ValueError as e:
        raise ParamsError(str(e)) from None


def return_to_actor(method: str, value: bytes) -> bytes:
    """A receipt's return (zqnode's msgpack) as the actor's DAG-CBOR (empty: none)."""
    if not value:
        return b""
    if method in ("ProveCommitSectors3", "ProveReplicaUpdates3"):
        r = msgspec.msgpack.decode(value, type=M.BatchReturn)
        return dagcbor.encode(F.BatchReturn(success_count=r.success_count, fail_codes=[
            F.FailCode(idx=f.idx, code=f.code) for f in r.fail_codes]))
    if method == "TerminateSectors":
        r = msgspec.msgpack.decode(value, type=M.TerminateSectorsReturn)
        return dagcbor.encode(F.TerminateSectorsReturn(done=r.done))
    return b""
