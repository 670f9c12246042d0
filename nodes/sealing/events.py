"""Events: what happens to a sector. Each names its sector and carries the sector's
cause id; events that answer a command also carry the command's `step`, so an answer
that comes after the sector moved on is recognised as stale and dropped.

`apply` records the event's data in the sector (Lotus's mutators); the transition table
(nodes.sealing.table) says which state follows."""
from __future__ import annotations

import msgspec

from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.sector import ChainFacts, Piece, SectorInfo


class Event(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    sector: int
    cause: str
    step: int = 0                      # the command's step this answers (0: not an answer)

    def apply(self, s: SectorInfo, now: float) -> None:
        """Record what the event says in `s` (a copy the core commits if all goes well)."""

    def refused(self, s: SectorInfo) -> str:
        """Why `s` cannot take this event whatever its state says ("": it can); asked before
        the transition table, for an operator's request that needs more than a state."""
        return ""


class ErrorEvent(Event, frozen=True, kw_only=True):
    """An event that reports an error: it counts towards the back-off and the pause."""
    error: str


# -- creation and deals ------------------------------------------------------------------

class StartCC(Event, frozen=True, kw_only=True):
    """A committed-capacity sector (pledge): no pieces, straight to Packing."""


class StartDeals(Event, frozen=True, kw_only=True):
    """A sector for deal pieces: WaitDeals."""


class AssignPiece(Event, frozen=True, kw_only=True):
    piece: Piece

    def apply(self, s, now):
        if not s.pending and not s.deal_pieces():
            s.deals_since = now            # the WaitDeals timer starts with the first piece
        s.pending = [*s.pending, self.piece]


class AddNextPiece(Event, frozen=True, kw_only=True):
    pass


class PieceAdded(Event, frozen=True, kw_only=True):
    work_id: str
    comm_p: bytes
    payload_size: int
    padded_size: int
    offset: int

    def apply(self, s, now):
        from zqnode.nodes.sealing import states as S
        if s.state == S.REBUILD_ADD_PIECE:  # a rebuild adds the recorded pieces again
            s.rebuild_added += 1
            return
        s.pieces = [*s.pieces, msgspec.structs.replace(s.pending[0], offset=self.offset)]
        s.pending = s.pending[1:]


class StartPacking(Event, frozen=True, kw_only=True):
    def apply(self, s, now):
        s.pack_requested = True


class Packed(Event, frozen=True, kw_only=True):
    fillers: list[Piece]

    def apply(self, s, now):
        s.pieces = sorted([*s.pieces, *self.fillers], key=lambda p: p.offset)


# -- tickets --------------------------------------------------------------------------------

class TicketReady(Event, frozen=True, kw_only=True):
    ticket: bytes
    epoch: int

    def apply(self, s, now):
        s.ticket, s.ticket_epoch = self.ticket, self.epoch


class OldTicket(Event, frozen=True, kw_only=True):
    """The ticket would be too old when the pre-commit lands (or there is none)."""

    def apply(self, s, now):
        s.ticket, s.ticket_epoch = b"", -1


class TicketExpired(Event, frozen=True, kw_only=True):
    """The chain would refuse the ticket (too old, or a reorg changed it): get a new one
    and redo PreCommit1."""
    reason: str = ""

    def apply(self, s, now):
        s.ticket, s.ticket_epoch, s.comm_r = b"", -1, b""


# -- tasks -----------------------------------------------------------------------------------

class PreCommit1Done(Event, frozen=True, kw_only=True):
    work_id: str
    comm_d: bytes
    replica_id: bytes

    def apply(self, s, now):
        s.comm_d, s.pc2_fails = self.comm_d, 0


class PreCommit2Done(Event, frozen=True, kw_only=True):
    work_id: str
    comm_d: bytes
    comm_r: bytes

    def apply(self, s, now):
        s.comm_r = self.comm_r


class Commit1Done(Event, frozen=True, kw_only=True):
    work_id: str
    proof: bytes

    def apply(self, s, now):
        s.proof = self.proof


class Finalized(Event, frozen=True, kw_only=True):
    work_id: str

    def apply(self, s, now):
        s.proof = b""


class UnsealDone(Event, frozen=True, kw_only=True):
    work_id: str
    size: int                          # bytes written to the sector's unseal_out

    def apply(self, s, now):
        s.unseal_out, s.unseal_piece = "", -1


class TaskFailed(ErrorEvent, frozen=True, kw_only=True):
    task: str
    work_id: str = ""


# -- chain -------------------------------------------------------------------------------------

class PreCommitSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.precommit_msg = self.msg_id


class PreCommitBatch(Event, frozen=True, kw_only=True):
    """Checked and ready: wait for a PreCommit batch (Lotus's SectorPreCommitBatch)."""

    def apply(self, s, now):
        s.batch, s.batch_since = "", now


class BatchFormed(Event, frozen=True, kw_only=True):
    """The core put the sector in a PreCommit or commit batch (its send goes on under this
    id after a restart)."""
    batch: str

    def apply(self, s, now):
        s.batch = self.batch


class PreCommitBatchSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.precommit_msg = self.msg_id


class PreCommitLanded(Event, frozen=True, kw_only=True):
    precommit_epoch: int
    seed_epoch: int

    def apply(self, s, now):
        s.precommit_epoch, s.seed_epoch = self.precommit_epoch, self.seed_epoch


class ChainPreCommitFailed(ErrorEvent, frozen=True, kw_only=True):
    pass


class SeedReady(Event, frozen=True, kw_only=True):
    seed: bytes
    epoch: int
    precommit_epoch: int

    def apply(self, s, now):
        if (s.seed, s.seed_epoch) != (self.seed, self.epoch):
            s.proof = b""                  # a proof for another seed is worth nothing
        s.seed, s.seed_epoch, s.precommit_epoch = self.seed, self.epoch, self.precommit_epoch


class CommitSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.commit_msg = self.msg_id


class CommitAggregate(Event, frozen=True, kw_only=True):
    """Its proof checked: wait for a commit batch (Lotus's SectorSubmitCommitAggregate)."""

    def apply(self, s, now):
        s.batch, s.batch_since = "", now


class CommitAggregateSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.commit_msg = self.msg_id


class CommitLanded(Event, frozen=True, kw_only=True):
    epoch: int

    def apply(self, s, now):
        s.commit_epoch, s.proof = self.epoch, b""


class CommitFailed(ErrorEvent, frozen=True, kw_only=True):
    pass


class ProofChecked(Event, frozen=True, kw_only=True):
    """RebuildVerify: the rebuilt replica's proof against the chain's values."""
    ok: bool
    error: str = ""


# -- failure handlers: the decisions ------------------------------------------------------------

class Wake(Event, frozen=True, kw_only=True):
    """A back-off ended: run the state's handler again."""


class ChainChecked(Event, frozen=True, kw_only=True):
    facts: ChainFacts


class RetryAddPiece(Event, frozen=True, kw_only=True):
    pass


class RetryPreCommit1(Event, frozen=True, kw_only=True):
    pass


class RetryPreCommit2(Event, frozen=True, kw_only=True):
    pass


class RetryPreCommit(Event, frozen=True, kw_only=True):
    pass


class RetryPreCommitWait(Event, frozen=True, kw_only=True):
    pass


class RetryWaitSeed(Event, frozen=True, kw_only=True):
    pass


class RetryComputeProof(Event, frozen=True, kw_only=True):
    pass


class RetryInvalidProof(Event, frozen=True, kw_only=True):
    def apply(self, s, now):
        s.invalid_proofs += 1


class RetrySubmitCommit(Event, frozen=True, kw_only=True):
    pass


class RetryCommitWait(Event, frozen=True, kw_only=True):
    pass


class RetryFinalize(Event, frozen=True, kw_only=True):
    pass


class RetryRebuild(Event, frozen=True, kw_only=True):
    pass


class RetryUnseal(Event, frozen=True, kw_only=True):
    pass


class SealPreCommit1Failed(ErrorEvent, frozen=True, kw_only=True):
    """Start over from PreCommit1 (Lotus's SectorSealPreCommit1Failed)."""

    def apply(self, s, now):
        s.invalid_proofs, s.pc2_fails, s.proof = 0, 0, b""


class GiveUp(ErrorEvent, frozen=True, kw_only=True):
    """The chain says the sector can never be proven (its pre-commit expired ...): remove
    it. Never for our own faults, nor for a sector holding deal data (see core._give_up)."""


class Stuck(ErrorEvent, frozen=True, kw_only=True):
    """Nothing the machine can do: pause for an operator, with the reason shown."""


# -- post-seal and plans --------------------------------------------------------------------------

class FaultDetected(Event, frozen=True, kw_only=True):
    """Found faulty here (a failed check)."""


class FaultReported(Event, frozen=True, kw_only=True):
    """The chain lists the sector as faulty."""


class FaultRecovered(Event, frozen=True, kw_only=True):
    """The chain lists the sector as active again."""


class Terminate(Event, frozen=True, kw_only=True):
    """Terminate it: it waits for a termination batch (Lotus's TerminateBatcher)."""

    def apply(self, s, now):
        s.batch, s.batch_since = "", now


class TerminateDeferred(Event, frozen=True, kw_only=True):
    """Its deadline may not be changed now: it waits for the next batch."""

    def apply(self, s, now):
        s.batch, s.batch_since = "", now


class TerminateSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.terminate_msg = self.msg_id


class Terminated(Event, frozen=True, kw_only=True):
    pass


class TerminateFailed(ErrorEvent, frozen=True, kw_only=True):
    pass


class Rebuild(Event, frozen=True, kw_only=True):
    """Seal the lost replica again: same ticket, so the same comm_r, then verified."""

    def refused(self, s):
        if s.update_comm_r or s.key_pieces:
            return (f"sector {s.number} was snapped up: sealing it again gives its CC replica, "
                    "not the update the chain proves")
        return ""

    def apply(self, s, now):
        s.rebuild_added = 0


class Cleaned(Event, frozen=True, kw_only=True):
    pass


class PiecesReady(Event, frozen=True, kw_only=True):
    pass


class Unseal(Event, frozen=True, kw_only=True):
    out: str                           # the file to write the data to
    piece: int = -1                    # -1: the whole sector's data

    def apply(self, s, now):
        s.unseal_out, s.unseal_piece = self.out, self.piece


# -- SnapDeals ---------------------------------------------------------------------------------------

class SnapUp(Event, frozen=True, kw_only=True):
    """An operator marks a proving CC sector for upgrade: it takes deal pieces as a new deal
    sector does, then its replica is updated (Lotus's SectorMarkForUpgrade)."""

    def refused(self, s):
        if s.state in S.SNAP or s.key_pieces:
            return f"sector {s.number} is being snapped up already ({s.state})"
        if s.kind != "cc" or s.deal_pieces():
            return f"sector {s.number} holds deal data: only a committed-capacity sector is snapped up"
        if s.state != S.PROVING or s.paused:
            return (f"sector {s.number} is {s.state}{' (paused)' if s.paused else ''}: "
                    "a sector is snapped up from Proving")
        return ""

    def apply(self, s, now):
        s.key_pieces, s.pieces, s.pending, s.kind = s.pieces, [], [], "deal"
        s.pack_requested, s.deals_since = False, 0.0


class ReplicaUpdated(Event, frozen=True, kw_only=True):
    work_id: str
    comm_r_new: bytes
    comm_d_new: bytes

    def apply(self, s, now):
        s.update_comm_r, s.update_comm_d, s.update_proof = self.comm_r_new, self.comm_d_new, b""


class ReplicaUpdateProven(Event, frozen=True, kw_only=True):
    work_id: str
    proof: bytes

    def apply(self, s, now):
        s.update_proof = self.proof


class ReplicaUpdateSent(Event, frozen=True, kw_only=True):
    msg_id: str

    def apply(self, s, now):
        s.update_msg, s.update_sent = self.msg_id, True


class ReplicaUpdateLanded(Event, frozen=True, kw_only=True):
    epoch: int

    def apply(self, s, now):
        s.update_epoch, s.update_sent = self.epoch, True      # found on chain: sent, whoever sent it


class ReplicaUpdateSubmitFailed(ErrorEvent, frozen=True, kw_only=True):
    """The chain refused the update, or reverted it: it is sent again (a new message)."""

    def apply(self, s, now):
        s.update_msg, s.update_epoch = "", -1


class UpdateActive(Event, frozen=True, kw_only=True):
    """The update is final on chain: the sector's commitments are the new ones."""

    def apply(self, s, now):
        s.comm_r, s.comm_d, s.key_pieces = s.update_comm_r, s.update_comm_d, []
        s.update_proof = b""


class SectorKeyReleased(Event, frozen=True, kw_only=True):
    work_id: str


class RetryReplicaUpdate(Event, frozen=True, kw_only=True):
    pass


class RetryProveReplicaUpdate(Event, frozen=True, kw_only=True):
    pass


class RetrySubmitReplicaUpdate(Event, frozen=True, kw_only=True):
    pass


class RetryReplicaUpdateWait(Event, frozen=True, kw_only=True):
    pass


class RetryFinalizeReplicaUpdate(Event, frozen=True, kw_only=True):
    pass


class RetryReleaseSectorKey(Event, frozen=True, kw_only=True):
    pass


class AbortUpgrade(Event, frozen=True, kw_only=True):
    """Give the upgrade up (before it is sent): its update's files go, its deal pieces go to
    other deal sectors, and the sector proves its CC replica again."""

    def refused(self, s):
        return upgrade_abort_refused(s)


def upgrade_abort_refused(s: SectorInfo) -> str:
    """Why the upgrade of `s` can no longer be aborted (""), by event or by resume: once
    its update may be on chain, the new replica is the one the chain proves."""
    if s.update_sent or s.state == S.SUBMIT_REPLICA_UPDATE:
        return (f"sector {s.number}'s update was sent to the chain: the upgrade can no "
                "longer be aborted (it lands, or is sent again)")
    return ""


class UpgradeAborted(Event, frozen=True, kw_only=True):
    work_id: str

    def apply(self, s, now):
        s.pieces, s.key_pieces, s.pending, s.kind = s.key_pieces, [], [], "cc"
        s.update_comm_r, s.update_comm_d, s.update_proof, s.update_msg = b"", b"", b"", ""


# -- operators and the global ones ---------------------------------------------------------------

class Remove(Event, frozen=True, kw_only=True):
    pass


class SectorRemoved(Event, frozen=True, kw_only=True):
    pass


class RemoveFailed(ErrorEvent, frozen=True, kw_only=True):
    pass


class Resume(Event, frozen=True, kw_only=True):
    """An operator's jump (damocles `resume --state S`): to `state`, or, when empty, the
    state it is in; the retry counters start again. `Aborted` drops the sector."""
    state: str = ""

    def apply(self, s, now):
        s.paused, s.retries, s.retry_at, s.last_error = False, 0, 0.0, ""
        s.pc1_fails, s.pc2_fails, s.invalid_proofs = 0, 0, 0


class TemporaryError(ErrorEvent, frozen=True, kw_only=True):
    """A command could not be carried out now (chain or manager unreachable ...): run the
    same handler again after a back-off."""


def to_plain(event: Event) -> dict:
    """The event's fields as JSON-friendly data (bytes as hex), without the routing ones."""
    data = msgspec.to_builtins(event, builtin_types=(bytes,))
    return {k: hexed(v) for k, v in data.items() if k not in ("sector", "cause", "step", "type")}


def hexed(x):
    """`x` with bytes as hex, at any depth (for JSON)."""
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {k: hexed(v) for k, v in x.items()}
    if isinstance(x, list):
        return [hexed(v) for v in x]
    return x
