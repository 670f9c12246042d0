"""The poster node's RPC (requests go to "@poster"), what `zqnode proving ...` asks.

`miner` = 0 in a request means the node's only miner (refused with "invalid" when it
proves for several). Deadline indexes out of range and unknown miners are refused with
"invalid" and "not_found"."""
from __future__ import annotations

import typing

import msgspec

from zqnode.bus.codec import Msg
from zqnode.nodes.chain.miner import DeadlineView
from zqnode.nodes.chain.policy import DeadlineInfo


# -- the poster's records, as its core keeps them and `zqnode proving` shows them ----------
class SkippedSector(msgspec.Struct, frozen=True):
    number: int
    reason: str


class Declaration(msgspec.Struct, kw_only=True):
    deadline: int
    partition: int
    sectors: list[int]


class DeadlineOutcome(msgspec.Struct, kw_only=True):
    miner: int
    index: int
    open: int
    close: int
    status: str           # proven | missed | unconfirmed (sent, not confirmed by Close) | empty
    #                       | unknown (closed before its partitions were read)
    needed: list[int] = []             # partitions with sectors to prove
    landed: list[int] = []             # partitions proven on chain
    skipped: list[SkippedSector] = []
    messages: list[str] = []
    notes: list[str] = []
    declared: list[SkippedSector] = []   # sectors of deadline index+2 declared faulty, and why


class MessageRow(msgspec.Struct, kw_only=True):
    msg_id: str
    kind: str                          # post | faults | recoveries
    miner: int
    deadline: int
    open: int
    batch: int
    nonce: int
    status: str
    reason: str


# -- replies ------------------------------------------------------------------------------
class BatchView(msgspec.Struct, kw_only=True):
    index: int
    partitions: list[int]
    state: str
    attempt: int
    msg_id: str
    messages: list[str]


class DeclarationView(msgspec.Struct, kw_only=True):
    ref: str
    state: str
    declarations: list[Declaration]
    messages: list[str]


class RunnerView(msgspec.Struct, kw_only=True):
    id: str
    index: int
    open: int
    close: int
    challenge: int
    state: str
    randomness: bytes
    batches: list[BatchView]
    skipped: list[SkippedSector]
    declarations: list[DeclarationView]
    notes: list[str]


class MinerSummary(msgspec.Struct, kw_only=True):
    actor_id: int
    sender: str                        # its PoSt messages come from this address
    seal_proof: int
    current: DeadlineInfo
    runners: list[RunnerView]
    proven: int                        # outcomes kept: deadlines proven, missed, ...
    missed: int
    unconfirmed: int
    empty: int


class PosterGetInfo(Msg):
    pass


class PosterInfo(Msg):
    node: str
    network: str
    head: int
    prover: str
    config: dict[str, typing.Any]     # its [poster] section, as in a config file
    miners: list[MinerSummary]


class PosterListDeadlines(Msg):
    miner: int = 0


class DeadlineRow(msgspec.Struct, kw_only=True):
    index: int
    open: int                          # the next (or current) window
    close: int
    partitions: int
    sectors: int
    faults: int
    recoveries: int
    posted: list[int]                  # partitions proven in the current window
    runner: str                        # its runner's state, "" when none runs
    last: str                          # how it ended last time (an outcome status, "" if never)


class PosterDeadlines(Msg):
    miner: int
    current: DeadlineInfo
    deadlines: list[DeadlineRow]


class PosterGetDeadline(Msg):
    index: int
    miner: int = 0


class PosterDeadline(Msg):
    miner: int
    info: DeadlineInfo                 # the next (or current) window of this deadline
    chain: DeadlineView
    runner: RunnerView | None
    outcomes: list[DeadlineOutcome]    # newest first
    messages: list[MessageRow]         # of the runner's window, else of the latest outcome's


class PosterListFaults(Msg):
    miner: int = 0


class FaultRow(msgspec.Struct, kw_only=True):
    deadline: int
    partition: int
    sector: int
    state: str                         # faulty | recovering
    reason: str                        # the poster's last word on it ("" if none)


class PosterFaults(Msg):
    miner: int
    faults: list[FaultRow]
    skipped: list[SkippedSector]       # left out of proofs by running deadlines


class PosterCheckDeadline(Msg):
    index: int
    miner: int = 0


class SectorCheck(msgspec.Struct, kw_only=True):
    number: int
    partition: int
    state: str                         # on chain: active | faulty | recovering | unproven
    ok: bool
    reason: str


class PosterCheckReport(Msg):
    miner: int
    index: int
    sectors: list[SectorCheck]
