"""The transition table: for each state, the events it takes and the state each leads to
(Lotus's fsmPlanners, storage/pipeline/fsm.go, with damocles' rebuild and unseal plans).

    SAME    stay, and run the state's handler again (a back-off ended, a retry)
    APPLY   stay; record the event's data, nothing runs again
    DECIDE  a failure handler's input: the core decides which event follows

An event a state does not list is refused (InvalidTransition) and changes nothing."""
from __future__ import annotations

from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import states as S

SAME, APPLY, DECIDE = "=", ".", "?"

TABLE: dict[str, dict[type[E.Event], str]] = {
    S.NEW: {E.StartCC: S.PACKING, E.StartDeals: S.WAIT_DEALS},

    # -- sealing --------------------------------------------------------------------------
    S.WAIT_DEALS: {E.AssignPiece: SAME, E.AddNextPiece: S.ADD_PIECE, E.StartPacking: S.PACKING},
    S.ADD_PIECE: {E.PieceAdded: S.WAIT_DEALS, E.AssignPiece: APPLY, E.StartPacking: APPLY,
                  E.TaskFailed: S.ADD_PIECE_FAILED},
    S.PACKING: {E.Packed: S.GET_TICKET},
    S.GET_TICKET: {E.TicketReady: S.PRE_COMMIT1},
    S.PRE_COMMIT1: {E.PreCommit1Done: S.PRE_COMMIT2, E.TaskFailed: S.SEAL_PRE_COMMIT1_FAILED,
                    E.OldTicket: S.GET_TICKET},
    S.PRE_COMMIT2: {E.PreCommit2Done: S.PRE_COMMITTING, E.TaskFailed: S.SEAL_PRE_COMMIT2_FAILED},
    S.PRE_COMMITTING: {E.PreCommitSent: S.PRE_COMMIT_WAIT, E.PreCommitLanded: S.WAIT_SEED,
                       E.ChainPreCommitFailed: S.PRE_COMMIT_FAILED, E.TicketExpired: S.GET_TICKET,
                       E.PreCommitBatch: S.SUBMIT_PRE_COMMIT_BATCH},
    S.SUBMIT_PRE_COMMIT_BATCH: {E.BatchFormed: SAME, E.PreCommitBatchSent: S.PRE_COMMIT_BATCH_WAIT,
                                E.ChainPreCommitFailed: S.PRE_COMMIT_FAILED},
    S.PRE_COMMIT_BATCH_WAIT: {E.PreCommitLanded: S.WAIT_SEED,
                              E.ChainPreCommitFailed: S.PRE_COMMIT_FAILED, E.RetryPreCommit: S.PRE_COMMITTING},
    S.PRE_COMMIT_WAIT: {E.PreCommitLanded: S.WAIT_SEED, E.ChainPreCommitFailed: S.PRE_COMMIT_FAILED,
                        E.RetryPreCommit: S.PRE_COMMITTING},
    S.WAIT_SEED: {E.SeedReady: S.COMMITTING, E.ChainPreCommitFailed: S.PRE_COMMIT_FAILED},
    S.COMMITTING: {E.Commit1Done: S.SUBMIT_COMMIT, E.TaskFailed: S.COMPUTE_PROOF_FAILED},
    S.SUBMIT_COMMIT: {E.CommitSent: S.COMMIT_WAIT, E.CommitLanded: S.FINALIZE_SECTOR,
                      E.CommitFailed: S.COMMIT_FAILED, E.CommitAggregate: S.SUBMIT_COMMIT_AGGREGATE},
    S.SUBMIT_COMMIT_AGGREGATE: {E.BatchFormed: SAME, E.CommitAggregateSent: S.COMMIT_AGGREGATE_WAIT,
                                E.CommitFailed: S.COMMIT_FAILED, E.RetrySubmitCommit: S.SUBMIT_COMMIT},
    S.COMMIT_AGGREGATE_WAIT: {E.CommitLanded: S.FINALIZE_SECTOR, E.CommitFailed: S.COMMIT_FAILED,
                              E.RetrySubmitCommit: S.SUBMIT_COMMIT},
    S.COMMIT_WAIT: {E.CommitLanded: S.FINALIZE_SECTOR, E.CommitFailed: S.COMMIT_FAILED,
                    E.RetrySubmitCommit: S.SUBMIT_COMMIT},
    S.FINALIZE_SECTOR: {E.Finalized: S.PROVING, E.TaskFailed: S.FINALIZE_FAILED},

    # -- sealing failures -------------------------------------------------------------------
    S.ADD_PIECE_FAILED: {E.RetryAddPiece: S.ADD_PIECE, E.AssignPiece: APPLY, E.StartPacking: APPLY},
    S.SEAL_PRE_COMMIT1_FAILED: {E.RetryPreCommit1: S.PRE_COMMIT1},
    S.SEAL_PRE_COMMIT2_FAILED: {E.RetryPreCommit1: S.PRE_COMMIT1, E.RetryPreCommit2: S.PRE_COMMIT2},
    S.PRE_COMMIT_FAILED: {E.ChainChecked: DECIDE, E.RetryPreCommit: S.PRE_COMMITTING,
                          E.RetryPreCommitWait: S.PRE_COMMIT_WAIT, E.PreCommitLanded: S.WAIT_SEED,
                          E.TicketExpired: S.GET_TICKET, E.GiveUp: S.REMOVING},
    S.COMPUTE_PROOF_FAILED: {E.RetryComputeProof: S.COMMITTING,
                             E.SealPreCommit1Failed: S.SEAL_PRE_COMMIT1_FAILED},
    S.COMMIT_FAILED: {E.ChainChecked: DECIDE, E.RetryWaitSeed: S.WAIT_SEED,
                      E.RetryComputeProof: S.COMMITTING, E.RetryInvalidProof: S.COMMITTING,
                      E.RetryPreCommitWait: S.PRE_COMMIT_WAIT, E.RetryPreCommit: S.PRE_COMMITTING,
                      E.RetryCommitWait: S.COMMIT_WAIT, E.RetrySubmitCommit: S.SUBMIT_COMMIT,
                      E.CommitLanded: S.FINALIZE_SECTOR,
                      E.SealPreCommit1Failed: S.SEAL_PRE_COMMIT1_FAILED, E.GiveUp: S.REMOVING},
    S.FINALIZE_FAILED: {E.RetryFinalize: S.FINALIZE_SECTOR},

    # -- post-seal ----------------------------------------------------------------------------
    S.PROVING: {E.FaultDetected: S.FAULTY, E.FaultReported: S.FAULT_REPORTED,
                E.Terminate: S.TERMINATING, E.Rebuild: S.REBUILD_CLEAN, E.Unseal: S.UNSEALING,
                E.SnapUp: S.SNAP_DEALS_WAIT_DEALS},
    S.FAULTY: {E.FaultReported: S.FAULT_REPORTED, E.Rebuild: S.REBUILD_CLEAN,
               E.Terminate: S.TERMINATING},
    S.FAULT_REPORTED: {E.FaultRecovered: S.PROVING, E.Rebuild: S.REBUILD_CLEAN,
                       E.Terminate: S.TERMINATING},
    S.TERMINATING: {E.BatchFormed: SAME, E.TerminateDeferred: SAME, E.TerminateSent: S.TERMINATE_WAIT,
                    E.TerminateFailed: S.TERMINATE_FAILED},
    S.TERMINATE_WAIT: {E.Terminated: S.REMOVING, E.TerminateFailed: S.TERMINATE_FAILED},
    S.TERMINATE_FAILED: {E.Terminate: S.TERMINATING},
    S.REMOVING: {E.SectorRemoved: S.REMOVED, E.RemoveFailed: S.REMOVE_FAILED},
    S.REMOVE_FAILED: {},
    S.REMOVED: {},
    S.ABORTED: {},

    # -- plans: rebuild a lost replica, unseal ----------------------------------------------------
    S.REBUILD_CLEAN: {E.Cleaned: S.REBUILD_ADD_PIECE},
    S.REBUILD_ADD_PIECE: {E.PieceAdded: SAME, E.PiecesReady: S.REBUILD_PRE_COMMIT1,
                          E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_PRE_COMMIT1: {E.PreCommit1Done: S.REBUILD_PRE_COMMIT2, E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_PRE_COMMIT2: {E.PreCommit2Done: S.REBUILD_CHECK, E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_CHECK: {E.Commit1Done: S.REBUILD_VERIFY, E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_VERIFY: {E.ProofChecked: S.REBUILD_FINALIZE, E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_FINALIZE: {E.Finalized: S.PROVING, E.TaskFailed: S.REBUILD_FAILED},
    S.REBUILD_FAILED: {E.RetryRebuild: S.REBUILD_CLEAN},
    S.UNSEALING: {E.UnsealDone: S.PROVING, E.TaskFailed: S.UNSEAL_FAILED},
    S.UNSEAL_FAILED: {E.RetryUnseal: S.UNSEALING},

    # -- SnapDeals: a proving CC sector takes deal data (Lotus's fsm, snap deals states) ----------
    S.SNAP_DEALS_WAIT_DEALS: {E.AssignPiece: SAME, E.AddNextPiece: S.SNAP_DEALS_ADD_PIECE,
                              E.StartPacking: S.SNAP_DEALS_PACKING, E.AbortUpgrade: S.ABORT_UPGRADE},
    S.SNAP_DEALS_ADD_PIECE: {E.PieceAdded: S.SNAP_DEALS_WAIT_DEALS, E.AssignPiece: APPLY, E.StartPacking: APPLY,
                             E.TaskFailed: S.SNAP_DEALS_ADD_PIECE_FAILED},
    S.SNAP_DEALS_PACKING: {E.Packed: S.UPDATE_REPLICA},
    S.UPDATE_REPLICA: {E.ReplicaUpdated: S.PROVE_REPLICA_UPDATE, E.TaskFailed: S.REPLICA_UPDATE_FAILED,
                       E.AbortUpgrade: S.ABORT_UPGRADE},
    S.PROVE_REPLICA_UPDATE: {E.ReplicaUpdateProven: S.SUBMIT_REPLICA_UPDATE, E.TaskFailed: S.REPLICA_UPDATE_FAILED,
                             E.AbortUpgrade: S.ABORT_UPGRADE},
    S.SUBMIT_REPLICA_UPDATE: {E.ReplicaUpdateSent: S.REPLICA_UPDATE_WAIT,
                              E.ReplicaUpdateLanded: S.FINALIZE_REPLICA_UPDATE,
                              E.ReplicaUpdateSubmitFailed: S.REPLICA_UPDATE_FAILED},
    S.REPLICA_UPDATE_WAIT: {E.ReplicaUpdateLanded: S.FINALIZE_REPLICA_UPDATE,
                            E.ReplicaUpdateSubmitFailed: S.REPLICA_UPDATE_FAILED},
    S.FINALIZE_REPLICA_UPDATE: {E.Finalized: S.UPDATE_ACTIVATING, E.TaskFailed: S.FINALIZE_REPLICA_UPDATE_FAILED},
    S.UPDATE_ACTIVATING: {E.UpdateActive: S.RELEASE_SECTOR_KEY,
                          E.ReplicaUpdateSubmitFailed: S.REPLICA_UPDATE_FAILED},
    S.RELEASE_SECTOR_KEY: {E.SectorKeyReleased: S.PROVING, E.TaskFailed: S.RELEASE_SECTOR_KEY_FAILED},
    S.SNAP_DEALS_ADD_PIECE_FAILED: {E.RetryAddPiece: S.SNAP_DEALS_ADD_PIECE, E.AssignPiece: APPLY,
                                    E.StartPacking: APPLY, E.AbortUpgrade: S.ABORT_UPGRADE},
    S.REPLICA_UPDATE_FAILED: {E.RetryReplicaUpdate: S.UPDATE_REPLICA,
                              E.RetryProveReplicaUpdate: S.PROVE_REPLICA_UPDATE,
                              E.RetrySubmitReplicaUpdate: S.SUBMIT_REPLICA_UPDATE,
                              E.RetryReplicaUpdateWait: S.REPLICA_UPDATE_WAIT,
                              E.AbortUpgrade: S.ABORT_UPGRADE},
    S.FINALIZE_REPLICA_UPDATE_FAILED: {E.RetryFinalizeReplicaUpdate: S.FINALIZE_REPLICA_UPDATE},
    S.RELEASE_SECTOR_KEY_FAILED: {E.RetryReleaseSectorKey: S.RELEASE_SECTOR_KEY},
    S.ABORT_UPGRADE: {E.UpgradeAborted: S.PROVING, E.TaskFailed: SAME},
}

# Taken in every state but the final ones (Lotus's global mutators, and the back-off):
# Resume goes where the operator says (see core), Remove removes.
GLOBAL: dict[type[E.Event], str] = {
    E.Wake: SAME, E.TemporaryError: SAME, E.Stuck: SAME, E.Resume: SAME, E.Remove: S.REMOVING,
}
for _state in TABLE:
    if _state not in (S.NEW, *S.FINAL):
        for _kind, _target in GLOBAL.items():
            TABLE[_state].setdefault(_kind, _target)

# Events that mean real progress: the error count starts again. Not PreCommit1Done: the
# same ticket replays the stored result, so PreCommit2 failing, PreCommit1 and PreCommit2
# failing again would go round for ever; the replica counts once PreCommit2 is done.
PROGRESS = (E.PieceAdded, E.Packed, E.TicketReady, E.PreCommit2Done,
            E.PreCommitSent, E.PreCommitBatchSent, E.PreCommitLanded, E.SeedReady, E.Commit1Done, E.CommitSent,
            E.CommitAggregateSent, E.CommitLanded, E.Finalized, E.UnsealDone, E.Cleaned, E.ProofChecked, E.SectorRemoved,
            E.TerminateSent, E.Terminated, E.ReplicaUpdated, E.ReplicaUpdateProven, E.ReplicaUpdateSent,
            E.ReplicaUpdateLanded, E.UpdateActive, E.SectorKeyReleased)


def target(state: str, kind: type[E.Event]) -> str | None:
    return TABLE.get(state, {}).get(kind)
