"""Commands: what the core asks its shell to do. Every command names its sector, carries
the sector's cause id and the step it belongs to; the shell answers long-running ones
with events carrying that step. `Save` always comes first: nothing happens before the
sector's new state and its log are committed."""
from __future__ import annotations

import msgspec

from zqnode.nodes.sealing.sector import LogEntry, SectorInfo


class Command(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    sector: int
    cause: str
    step: int = 0


class Save(Command, frozen=True, kw_only=True):
    """Persist the sector and append its log entries (one transaction), then publish."""
    info: SectorInfo
    log: list[LogEntry]
    next_number: int                   # the next sector number to hand out


class Consume(Command, frozen=True, kw_only=True):
    """The work's result is recorded in the sector: the call tracker may forget it."""
    work_id: str


class Schedule(Command, frozen=True, kw_only=True):
    """Send Wake(step) at wall-clock time `at`."""
    at: float


# -- tasks (through the manager's call tracker: the same work asked twice is done once) ----

class RunTask(Command, frozen=True, kw_only=True):
    task: str
    priority: int = 0


class RunAddPiece(RunTask, frozen=True, kw_only=True):
    seal_proof: int
    index: int                         # the piece's position among the sector's pieces
    path: str                          # the manager's copy of the piece
    payload_size: int
    update: bool = False               # SnapDeals: into the CC sector's update


class RunReplicaUpdate(RunTask, frozen=True, kw_only=True):
    comm_r_old: bytes


class RunProveReplicaUpdate(RunTask, frozen=True, kw_only=True):
    comm_r_new: bytes


class RunFinalizeReplicaUpdate(RunTask, frozen=True, kw_only=True):
    keep_unsealed: bool = False
    release_key: bool = False          # ReleaseSectorKey (of the update of comm_r_new)
    comm_r_new: bytes = b""
    drop_update: bool = False          # AbortUpgrade: the update's files go


class RunPreCommit1(RunTask, frozen=True, kw_only=True):
    seal_proof: int
    ticket: bytes


class RunPreCommit2(RunTask, frozen=True, kw_only=True):
    ticket: bytes                      # the one PreCommit1 sealed with (a new one: new work)


class RunCommit1(RunTask, frozen=True, kw_only=True):
    seed: bytes
    ticket: bytes


class RunFinalize(RunTask, frozen=True, kw_only=True):
    keep_unsealed: bool


class RunUnseal(RunTask, frozen=True, kw_only=True):
    piece: int                         # -1: the whole sector
    out: str


# -- chain ----------------------------------------------------------------------------------

class SendReplicaUpdate(Command, frozen=True, kw_only=True):
    """Once the sector's deadline is mutable, ProveReplicaUpdates3 once: ReplicaUpdateSent,
    ReplicaUpdateLanded (the chain has it already) or ReplicaUpdateSubmitFailed."""
    comm_r_new: bytes
    proof: bytes


class WaitReplicaUpdate(Command, frozen=True, kw_only=True):
    """ReplicaUpdateLanded once it landed with the confidence and the chain's sector has
    comm_r_new; else ReplicaUpdateSubmitFailed."""
    msg_id: str
    comm_r_new: bytes


class WaitUpdateActive(Command, frozen=True, kw_only=True):
    """UpdateActive once the update is past finality and the sector's deadline is neither
    being proven nor next to it (its files are about to move); RetrySubmitReplicaUpdate
    when the chain no longer has it (a reorg)."""
    comm_r_new: bytes
    landed: int


class GetTicket(Command, frozen=True, kw_only=True):
    """TicketReady: the seal ticket (the epoch of our pre-commit when the chain has one)."""


class SendPreCommit(Command, frozen=True, kw_only=True):
    """Check with the chain (core.precommit_decision), then send PreCommitSector once:
    PreCommitSent, PreCommitLanded, TicketExpired or ChainPreCommitFailed."""
    seal_proof: int
    ticket: bytes
    ticket_epoch: int
    comm_d: bytes
    comm_r: bytes


class BatchMember(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    step: int


class SendPreCommitBatch(Command, frozen=True, kw_only=True):
    """Send the batch's PreCommitSectorBatch2 once (`sector` is its lowest member):
    PreCommitBatchSent for every member, or ChainPreCommitFailed for every member if the
    chain refuses it."""
    batch: str
    members: list[BatchMember]


class WaitPreCommit(Command, frozen=True, kw_only=True):
    """PreCommitLanded once the message has the confidence, else ChainPreCommitFailed."""
    msg_id: str
    comm_r: bytes


class WaitSeed(Command, frozen=True, kw_only=True):
    """SeedReady once the head is past the pre-commit's seed epoch (+ confidence), else
    ChainPreCommitFailed when the pre-commit is no longer on chain."""
    comm_r: bytes


class SendCommitAggregate(Command, frozen=True, kw_only=True):
    """Send the batch's ProveCommitSectors3 once (`sector` is its lowest member), its
    proofs aggregated or one per sector: CommitAggregateSent for every member, or
    CommitFailed for every member if the chain refuses it."""
    batch: str
    members: list[BatchMember]
    aggregate: bool


class SendProveCommit(Command, frozen=True, kw_only=True):
    """Check with the chain (core.commit_decision: the proof verifies with the chain's
    ticket and seed), then send ProveCommitSector once: CommitSent, CommitLanded or
    CommitFailed."""
    ticket: bytes
    ticket_epoch: int
    seed: bytes
    seed_epoch: int
    comm_d: bytes
    comm_r: bytes
    proof: bytes


class WaitProveCommit(Command, frozen=True, kw_only=True):
    msg_id: str


class CheckChain(Command, frozen=True, kw_only=True):
    """ChainChecked with the facts a failure handler decides on."""
    precommit_msg: str
    commit_msg: str
    ticket: bytes
    ticket_epoch: int
    seed: bytes
    comm_d: bytes
    comm_r: bytes
    proof: bytes


class VerifyProof(Command, frozen=True, kw_only=True):
    """ProofChecked: does `proof` verify with the chain's pre-commit values for the sector?"""
    ticket: bytes
    seed: bytes
    comm_d: bytes
    comm_r: bytes
    proof: bytes


class SendTerminateBatch(Command, frozen=True, kw_only=True):
    """Lotus's TerminateBatcher: one TerminateSectors for the members whose deadline is not
    the current, the next or the previous one (TerminateSent each); the others wait for
    the next batch (TerminateDeferred); gone from chain: Remove; only pre-committed:
    TerminateFailed."""
    batch: str
    members: list[BatchMember]


class WaitTerminate(Command, frozen=True, kw_only=True):
    msg_id: str


# -- storage ---------------------------------------------------------------------------------

class CleanSector(Command, frozen=True, kw_only=True):
    """Drop the sector's files (a rebuild starts from nothing): Cleaned."""


class RemoveSector(Command, frozen=True, kw_only=True):
    """Abort the sector's unfinished work, forget its results, drop its files: SectorRemoved."""


class AbortWork(Command, frozen=True, kw_only=True):
    """Abort the sector's unfinished work and forget its results (files stay)."""
