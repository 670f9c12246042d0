"""Sector states: Lotus's names (storage/pipeline/sector_state.go) for the sealing
pipeline, its failure states and the post-seal states, plus damocles' rebuild and unseal
plans, and `Aborted` (damocles: an operator dropped the sector)."""
from __future__ import annotations

NEW = ""                               # UndefinedSectorState: before the first event

# -- sealing, happy path ---------------------------------------------------------------
WAIT_DEALS = "WaitDeals"               # a deal sector taking pieces
ADD_PIECE = "AddPiece"                 # AP of the next pending piece
PACKING = "Packing"                    # the rest of the sector becomes zero filler
GET_TICKET = "GetTicket"
PRE_COMMIT1 = "PreCommit1"
PRE_COMMIT2 = "PreCommit2"
PRE_COMMITTING = "PreCommitting"       # checks, then sends PreCommitSector
PRE_COMMIT_WAIT = "PreCommitWait"
SUBMIT_PRE_COMMIT_BATCH = "SubmitPreCommitBatch"   # checked, waiting for its batch to be sent
PRE_COMMIT_BATCH_WAIT = "PreCommitBatchWait"       # its batch sent, waiting for it to land
WAIT_SEED = "WaitSeed"
COMMITTING = "Committing"              # C1 (the vanilla proof: there is no C2 here)
SUBMIT_COMMIT = "SubmitCommit"         # checks the proof, then sends ProveCommitSector
COMMIT_WAIT = "CommitWait"
SUBMIT_COMMIT_AGGREGATE = "SubmitCommitAggregate"  # checked, waiting for its batch to be sent
COMMIT_AGGREGATE_WAIT = "CommitAggregateWait"      # its batch sent, waiting for it to land
FINALIZE_SECTOR = "FinalizeSector"
PROVING = "Proving"

# -- sealing failures (each has a handler that decides how to go on) --------------------
ADD_PIECE_FAILED = "AddPieceFailed"
SEAL_PRE_COMMIT1_FAILED = "SealPreCommit1Failed"
SEAL_PRE_COMMIT2_FAILED = "SealPreCommit2Failed"
PRE_COMMIT_FAILED = "PreCommitFailed"
COMPUTE_PROOF_FAILED = "ComputeProofFailed"
COMMIT_FAILED = "CommitFailed"
FINALIZE_FAILED = "FinalizeFailed"

# -- post-seal ----------------------------------------------------------------------------
FAULTY = "Faulty"                      # found faulty here (not yet on chain)
FAULT_REPORTED = "FaultReported"       # faulty on chain (declared, or a missed PoSt)
TERMINATING = "Terminating"
TERMINATE_WAIT = "TerminateWait"        # waits chain finality (Lotus TerminateFinality)
TERMINATE_FAILED = "TerminateFailed"
REMOVING = "Removing"
REMOVE_FAILED = "RemoveFailed"
REMOVED = "Removed"

# -- damocles plans: rebuild a lost replica, unseal a sealed one -----------------------------
REBUILD_CLEAN = "RebuildClean"         # drop what is left of the replica
REBUILD_ADD_PIECE = "RebuildAddPiece"  # the deal pieces again, from the manager's copies
REBUILD_PRE_COMMIT1 = "RebuildPreCommit1"    # the same ticket: the same comm_d and labels
REBUILD_PRE_COMMIT2 = "RebuildPreCommit2"    # must give the same comm_r
REBUILD_CHECK = "RebuildCheck"         # C1 with the sector's seed ...
REBUILD_VERIFY = "RebuildVerify"       # ... and the proof verified against the chain's values
REBUILD_FINALIZE = "RebuildFinalize"
REBUILD_FAILED = "RebuildFailed"
UNSEALING = "Unsealing"
UNSEAL_FAILED = "UnsealFailed"

# SnapDeals (Lotus's states): a proving CC sector takes deal data into its replica
SNAP_DEALS_WAIT_DEALS = "SnapDealsWaitDeals"
SNAP_DEALS_ADD_PIECE = "SnapDealsAddPiece"
SNAP_DEALS_PACKING = "SnapDealsPacking"
UPDATE_REPLICA = "UpdateReplica"                  # RU: the new replica, comm_r_new
PROVE_REPLICA_UPDATE = "ProveReplicaUpdate"       # PR1: the vanilla update proof (no PR2 here)
SUBMIT_REPLICA_UPDATE = "SubmitReplicaUpdate"     # ProveReplicaUpdates3, in a mutable deadline
REPLICA_UPDATE_WAIT = "ReplicaUpdateWait"
FINALIZE_REPLICA_UPDATE = "FinalizeReplicaUpdate"
UPDATE_ACTIVATING = "UpdateActivating"            # the update past finality, its deadline quiet
RELEASE_SECTOR_KEY = "ReleaseSectorKey"           # the update becomes the sector, the CC replica goes
SNAP_DEALS_ADD_PIECE_FAILED = "SnapDealsAddPieceFailed"
REPLICA_UPDATE_FAILED = "ReplicaUpdateFailed"
FINALIZE_REPLICA_UPDATE_FAILED = "FinalizeReplicaUpdateFailed"
RELEASE_SECTOR_KEY_FAILED = "ReleaseSectorKeyFailed"
ABORT_UPGRADE = "AbortUpgrade"                    # back to a proving CC sector

ABORTED = "Aborted"                    # dropped by an operator (resume --state Aborted)

SEALING = (WAIT_DEALS, ADD_PIECE, PACKING, GET_TICKET, PRE_COMMIT1, PRE_COMMIT2, PRE_COMMITTING,
           SUBMIT_PRE_COMMIT_BATCH, PRE_COMMIT_BATCH_WAIT, PRE_COMMIT_WAIT, WAIT_SEED, COMMITTING, SUBMIT_COMMIT,
           SUBMIT_COMMIT_AGGREGATE, COMMIT_AGGREGATE_WAIT, COMMIT_WAIT, FINALIZE_SECTOR)
FAILURES = (ADD_PIECE_FAILED, SEAL_PRE_COMMIT1_FAILED, SEAL_PRE_COMMIT2_FAILED, PRE_COMMIT_FAILED,
            COMPUTE_PROOF_FAILED, COMMIT_FAILED, FINALIZE_FAILED, TERMINATE_FAILED, REMOVE_FAILED,
            REBUILD_FAILED, UNSEAL_FAILED, SNAP_DEALS_ADD_PIECE_FAILED, REPLICA_UPDATE_FAILED,
            FINALIZE_REPLICA_UPDATE_FAILED, RELEASE_SECTOR_KEY_FAILED)
# A sector is sealing from its first state to Proving, its failures included (what a
# pledge target and max_sealing_sectors count).
SEALING_NOW = SEALING + (ADD_PIECE_FAILED, SEAL_PRE_COMMIT1_FAILED, SEAL_PRE_COMMIT2_FAILED,
                         PRE_COMMIT_FAILED, COMPUTE_PROOF_FAILED, COMMIT_FAILED, FINALIZE_FAILED)
POST_SEAL = (PROVING, FAULTY, FAULT_REPORTED, TERMINATING, TERMINATE_WAIT, REMOVING, REMOVED)
REBUILD = (REBUILD_CLEAN, REBUILD_ADD_PIECE, REBUILD_PRE_COMMIT1, REBUILD_PRE_COMMIT2,
           REBUILD_CHECK, REBUILD_VERIFY, REBUILD_FINALIZE)
UNSEAL = (UNSEALING,)
SNAP = (SNAP_DEALS_WAIT_DEALS, SNAP_DEALS_ADD_PIECE, SNAP_DEALS_PACKING, UPDATE_REPLICA, PROVE_REPLICA_UPDATE,
        SUBMIT_REPLICA_UPDATE, REPLICA_UPDATE_WAIT, FINALIZE_REPLICA_UPDATE, UPDATE_ACTIVATING,
        RELEASE_SECTOR_KEY, ABORT_UPGRADE)
FINAL = (REMOVED,)
ALL = SEALING + (PROVING,) + FAILURES + POST_SEAL[1:] + REBUILD + UNSEAL + SNAP + (ABORTED,)

# From the ticket to the PreCommit (cfg.max_sealing bounds how many sectors are here: a
# ticket that waits for a busy worker grows too old before its PreCommit lands). Not a
# sector waiting for its PreCommit batch: it needs no worker, and the batch's slack
# sends it before its ticket expires.
TICKETED = (GET_TICKET, PRE_COMMIT1, PRE_COMMIT2, PRE_COMMITTING, SEAL_PRE_COMMIT1_FAILED,
            SEAL_PRE_COMMIT2_FAILED)

# What a sector must already have for an operator to move it into a state (resume --state).
REQUIRES: dict[str, tuple[str, ...]] = {
    PRE_COMMIT2: ("ticket",),
    PRE_COMMITTING: ("ticket", "comm_d", "comm_r"),
    PRE_COMMIT_WAIT: ("comm_r", "precommit_msg"),
    SUBMIT_PRE_COMMIT_BATCH: ("ticket", "comm_d", "comm_r"),
    PRE_COMMIT_BATCH_WAIT: ("comm_r", "precommit_msg"),
    WAIT_SEED: ("ticket", "comm_r"),
    COMMITTING: ("ticket", "comm_r", "seed"),
    SUBMIT_COMMIT: ("ticket", "comm_r", "seed", "proof"),
    COMMIT_WAIT: ("commit_msg",),
    SUBMIT_COMMIT_AGGREGATE: ("ticket", "comm_r", "seed", "proof"),
    COMMIT_AGGREGATE_WAIT: ("commit_msg",),
    FINALIZE_SECTOR: ("comm_r",),
    PROVING: ("comm_r",),
    FAULTY: ("comm_r",),
    FAULT_REPORTED: ("comm_r",),
    **{s: ("ticket", "comm_d", "comm_r", "seed") for s in REBUILD},
    UNSEALING: ("comm_r",),
    UPDATE_REPLICA: ("key_pieces",),
    PROVE_REPLICA_UPDATE: ("key_pieces", "update_comm_r"),
    SUBMIT_REPLICA_UPDATE: ("key_pieces", "update_comm_r", "update_proof"),
    REPLICA_UPDATE_WAIT: ("key_pieces", "update_msg"),
    ABORT_UPGRADE: ("key_pieces",),
}
# Operators cannot resume into these: the machine enters them itself.
NOT_RESUMABLE = (REMOVED, ADD_PIECE, UNSEALING, SNAP_DEALS_WAIT_DEALS, SNAP_DEALS_ADD_PIECE, SNAP_DEALS_PACKING,
                 FINALIZE_REPLICA_UPDATE, UPDATE_ACTIVATING, RELEASE_SECTOR_KEY) + FAILURES
