"""What the poster core takes in (events) and gives out (commands), and the values they
carry. Every event about a runner names it (`runner`); every command names its cause
(the runner's id). Sector numbers ascend everywhere."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.poster import Declaration, DeadlineOutcome, SkippedSector  # shown by `zqnode proving`


class PosterError(ValueError):
    pass


class UnexpectedEvent(PosterError):
    """An event the runner's state does not allow: a bug in the shell or the core."""


# -- values exchanged with the shell ------------------------------------------------------------

class Tip(msgspec.Struct, frozen=True):
    epoch: int
    key: str


class MinerInfo(msgspec.Struct, kw_only=True):
    actor_id: int
    sender: str                        # the address its PoSt messages come from
    seal_proof: int
    period_offset: int
    partition_sectors: int


class PartitionState(msgspec.Struct, kw_only=True):
    """A partition as the chain has it (sectors ascending)."""
    index: int
    sectors: list[int]
    faults: list[int] = []
    recoveries: list[int] = []

    def live(self) -> list[int]:
        """What the chain's verifier proves: sectors minus (faults - declared recoveries)."""
        out = set(self.faults) - set(self.recoveries)
        return [n for n in self.sectors if n not in out]


class PartitionWork(msgspec.Struct, kw_only=True):
    index: int
    sectors: list[int]                 # to prove, ascending


class PartitionProof(msgspec.Struct, kw_only=True):
    index: int
    proof: bytes
    proven: list[int]                  # the sectors the proof covers, ascending
    skipped: list[SkippedSector] = []  # sectors the prover could not prove (no usable proof then)


class PoStPart(msgspec.Struct, kw_only=True):
    index: int
    skipped: list[int] = []


class StoredBatch(msgspec.Struct, kw_only=True):
    """A batch a previous runner built for the same miner, deadline and randomness."""
    batch: int
    partitions: list[int]
    proofs: list[PartitionProof]
    skipped: list[SkippedSector] = []  # the sectors left out of these proofs
    msg_id: str = ""                   # its latest message, if one was pushed
    msg_status: str = ""               # pending | landed | failed | unknown (as the chain says now)


# -- events (in) --------------------------------------------------------------------------------

class Event(msgspec.Struct, kw_only=True, tag=True):
    cause: str = ""


class MinerTracked(Event):
    miner: MinerInfo


class HeadChanged(Event):
    reverted: list[Tip] = []           # newest first
    applied: list[Tip] = []            # oldest first
    snapshot: bool = False             # the head only: what happened before is unknown


class DeadlineLoaded(Event):
    runner: str
    randomness: bytes                  # beacon draw (WindowedPoStChallengeSeed) at Challenge
    partitions: list[PartitionState]
    posted: list[int] = []             # partitions already proven in this window
    ahead: list[PartitionState] = []   # deadline index+2
    stored: list[StoredBatch] = []


class LoadFailed(Event):
    runner: str
    reason: str


class CheckDone(Event):
    runner: str
    failed: list[SkippedSector] = []   # sectors that failed the check; the rest are healthy


class CheckFailed(Event):
    runner: str
    reason: str


class BatchProven(Event):
    runner: str
    batch: int
    partitions: list[PartitionProof]


class ProveFailed(Event):
    runner: str
    batch: int
    reason: str


class MessagePushed(Event):
    runner: str
    ref: str                           # "batch-N", "faults" or "recoveries"
    msg_id: str


class PushFailed(Event):
    runner: str
    ref: str
    reason: str


class MessageLanded(Event):
    """Landed with `message_confidence` tipsets on top (exit code 0), or landed and failed."""
    runner: str
    ref: str
    msg_id: str
    epoch: int
    exit_code: int
    error: str = ""
    posted: list[int] = []             # failed: the deadline's partitions proven meanwhile


class MessageDropped(Event):
    runner: str
    ref: str
    msg_id: str
    reason: str


# -- commands (out) -------------------------------------------------------------------------------

class Command(msgspec.Struct, kw_only=True, tag=True):
    cause: str                         # the runner (or head change) this comes from


class LoadDeadline(Command):
    miner: int
    index: int
    open: int
    challenge: int
    ahead_index: int
    delay_s: float = 0.0


class StartCheck(Command):
    miner: int
    sectors: list[int]


class DeclareFaults(Command):
    miner: int
    ref: str
    declarations: list[Declaration]


class DeclareRecoveries(Command):
    miner: int
    ref: str
    declarations: list[Declaration]


class ProveBatch(Command):
    miner: int
    deadline: int
    batch: int
    randomness: bytes
    partitions: list[PartitionWork]
    attempt: int
    delay_s: float = 0.0


class StoreProofs(Command):
    miner: int
    deadline: int
    open: int
    randomness: bytes
    batch: int
    partitions: list[PartitionProof]
    skipped: list[SkippedSector]


class PushSubmission(Command):
    miner: int
    ref: str
    deadline: int
    open: int
    randomness: bytes
    batch: int
    partitions: list[PoStPart]
    proofs: list[bytes]
    chain_commit_epoch: int


class WaitMessage(Command):
    miner: int
    deadline: int
    ref: str
    msg_id: str
    confidence: int


class Abort(Command):
    reason: str


class RecordOutcome(Command):
    outcome: DeadlineOutcome
