"""The builtin miner actor's methods that zqnode sends: their numbers and their parameters
and returns, field for field as go-state-types (builtin v13 to v19, unchanged across them)
and builtin-actors' actors/miner/src/types.rs define them. Every struct is a DAG-CBOR
array in field order (`dagcbor.encode` / `dagcbor.decode`)."""
from __future__ import annotations

from typing import Annotated

import msgspec

from zqnode.nodes.chain.filecoin.address import Address, AddressError
from zqnode.nodes.chain.filecoin.dagcbor import I64, MAX_LIST, U64, BitField, Bytes, Cid


def _list(kind):
    return Annotated[list[kind], msgspec.Meta(max_length=MAX_LIST)]


class _Tuple(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    pass


# builtin-actors actors/miner/src/lib.rs `enum Method`
SUBMIT_WINDOWED_POST = 5
TERMINATE_SECTORS = 9
DECLARE_FAULTS = 10
DECLARE_FAULTS_RECOVERED = 11
PRE_COMMIT_SECTOR_BATCH2 = 28
EXTEND_SECTOR_EXPIRATION2 = 32
PROVE_COMMIT_SECTORS3 = 34
PROVE_REPLICA_UPDATES3 = 35


class SectorPreCommitInfo(_Tuple):
    seal_proof: I64                        # abi.RegisteredSealProof
    sector_number: U64
    sealed_cid: Cid                        # CommR
    seal_rand_epoch: I64
    deal_ids: _list(U64)
    expiration: I64
    unsealed_cid: Cid | None               # CommD; null: a CC sector (the zero CommD)


class PreCommitSectorBatchParams2(_Tuple):
    sectors: _list(SectorPreCommitInfo)


class VerifiedAllocationKey(_Tuple):
    client: U64                            # actor id
    id: U64                                # verifreg allocation id


class DataActivationNotification(_Tuple):
    address: Bytes                         # an address's bytes
    payload: Bytes

    def __post_init__(self):
        try:
            Address.from_bytes(self.address)
        except AddressError as e:
            raise ValueError(str(e)) from None


class PieceActivationManifest(_Tuple):
    cid: Cid                               # the piece CID
    size: U64                              # abi.PaddedPieceSize
    verified_allocation_key: VerifiedAllocationKey | None
    notify: _list(DataActivationNotification)


class SectorActivationManifest(_Tuple):
    sector_number: U64
    pieces: _list(PieceActivationManifest)


class ProveCommitSectors3Params(_Tuple):
    sector_activations: _list(SectorActivationManifest)
    sector_proofs: _list(Bytes)            # one per sector, or none with an aggregate
    aggregate_proof: Bytes
    aggregate_proof_type: I64 | None       # abi.RegisteredAggregationProof (SnarkPackV2 = 1)
    require_activation_success: bool
    require_notification_success: bool


class SectorUpdateManifest(_Tuple):
    sector: U64
    deadline: U64
    partition: U64
    new_sealed_cid: Cid                    # comm_r_new
    pieces: _list(PieceActivationManifest)


class ProveReplicaUpdates3Params(_Tuple):
    sector_updates: _list(SectorUpdateManifest)
    sector_proofs: _list(Bytes)
    aggregate_proof: Bytes
    update_proofs_type: I64                # abi.RegisteredUpdateProof
    aggregate_proof_type: I64 | None
    require_activation_success: bool
    require_notification_success: bool


class FailCode(_Tuple):
    idx: U64
    code: U64                              # exitcode.ExitCode


class BatchReturn(_Tuple):
    """ProveCommitSectors3's and ProveReplicaUpdates3's return (go-state-types
    batch.BatchReturn, no wrapper)."""
    success_count: U64
    fail_codes: _list(FailCode)


class PoStPartition(_Tuple):
    index: U64
    skipped: BitField


class PoStProof(_Tuple):                   # go-state-types proof.PoStProof
    post_proof: I64                        # abi.RegisteredPoStProof
    proof_bytes: Bytes


class SubmitWindowedPoStParams(_Tuple):
    deadline: U64
    partitions: _list(PoStPartition)
    proofs: _list(PoStProof)
    chain_commit_epoch: I64
    chain_commit_rand: Bytes


class SectorDeclaration(_Tuple):
    """FaultDeclaration, RecoveryDeclaration and TerminationDeclaration: one shape."""
    deadline: U64
    partition: U64
    sectors: BitField


class DeclareFaultsParams(_Tuple):
    faults: _list(SectorDeclaration)


class DeclareFaultsRecoveredParams(_Tuple):
    recoveries: _list(SectorDeclaration)


class TerminateSectorsParams(_Tuple):
    terminations: _list(SectorDeclaration)


class TerminateSectorsReturn(_Tuple):
    done: bool


class SectorClaim(_Tuple):
    sector_number: U64
    maintain_claims: _list(U64)            # verifreg claim ids
    drop_claims: _list(U64)


class ExpirationExtension2(_Tuple):
    deadline: U64
    partition: U64
    sectors: BitField
    sectors_with_claims: _list(SectorClaim)
    new_expiration: I64


class ExtendSectorExpiration2Params(_Tuple):
    extensions: _list(ExpirationExtension2)


# method number -> (parameters, return; None: the actor returns nothing)
METHODS: dict[int, tuple[type, type | None]] = {
    SUBMIT_WINDOWED_POST: (SubmitWindowedPoStParams, None),
    TERMINATE_SECTORS: (TerminateSectorsParams, TerminateSectorsReturn),
    DECLARE_FAULTS: (DeclareFaultsParams, None),
    DECLARE_FAULTS_RECOVERED: (DeclareFaultsRecoveredParams, None),
    PRE_COMMIT_SECTOR_BATCH2: (PreCommitSectorBatchParams2, None),
    EXTEND_SECTOR_EXPIRATION2: (ExtendSectorExpiration2Params, None),
    PROVE_COMMIT_SECTORS3: (ProveCommitSectors3Params, BatchReturn),
    PROVE_REPLICA_UPDATES3: (ProveReplicaUpdates3Params, BatchReturn),
}
