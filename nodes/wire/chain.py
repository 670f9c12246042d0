"""The chain node's bus messages: the `chain.head` event and the RPC kinds it serves.

Requests go to "@chain" (any live chain node). A request the chain refuses is answered
with a bus Error whose code is one of: "invalid" (bad argument, refused message, bad
reorg depth), "not_found" (no such miner, tipset, deadline or message), "permission"
(reorg on a chain that does not allow it)."""
from __future__ import annotations

from typing import Annotated

import msgspec

from zqnode.bus.codec import Msg
from zqnode.nodes.chain.funds import MAX_SUPPLY
from zqnode.nodes.chain.messages import MessageLookup, Receipt, TipsetSummary
from zqnode.nodes.chain.miner import DeadlineView, MinerView, PreCommitOnChain, SectorView
from zqnode.nodes.chain.policy import DeadlineInfo

TOPIC_HEAD = "chain.head"
NOT_FOUND = "not_found"


# -- event ----------------------------------------------------------------------------------

class ChainHeadChanged(Msg):
    """Published on `chain.head` after each change is persisted. A new tipset: reverted = [],
    applied = [it]. A reorg: reverted newest first, applied oldest first. A (re)started
    chain node publishes its head once as applied = [head]."""
    reverted: list[TipsetSummary]
    applied: list[TipsetSummary]


# -- RPC: chain --------------------------------------------------------------------------------

class ChainGetHead(Msg):
    pass


class ChainHeadInfo(Msg):
    head: TipsetSummary
    network: str                       # the policy: devnet | mainnet
    epoch_seconds: float
    finality: int
    genesis: str                       # genesis tipset key
    miners: list[int]
    pool: int                          # messages waiting
    fork: int                          # reorgs so far
    reorg_allowed: bool
    base_fee: int = 0                  # attoFIL per gas unit for the next tipset's messages


class ChainGetTipset(Msg):
    epoch: int


class ChainTipset(Msg):
    tipset: TipsetSummary


class ChainGetRandomness(Msg):
    domain: int                        # a DomainTag value
    epoch: int
    entropy: bytes = b""
    source: str = ""                   # "" (the actor's source for the tag) | tickets | beacon


class ChainRandomness(Msg):
    randomness: bytes
    epoch: int
    source: str
    tipset: str                        # key of the tipset drawn from


class ChainReorg(Msg):
    depth: int


class ChainFund(Msg):
    """Devnet only: add `amount` nanoFIL to an account or (f0<id>) a miner actor."""
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_SUPPLY)]


class ChainFunded(Msg):
    address: str
    balance: int                       # nanoFIL, after


class ChainReorged(Msg):
    reverted: list[TipsetSummary]
    applied: list[TipsetSummary]


# -- RPC: messages ------------------------------------------------------------------------------

class ChainPush(Msg):
    """A message for the pool; its msgpack parameters travel as the first buffer frame."""
    sender: str
    to: int
    method: str
    nonce: int = -1                    # -1: the pool assigns the next one
    uuid: Annotated[str, msgspec.Meta(max_length=64)] = ""   # pushed again: the same message
    value: Annotated[int, msgspec.Meta(ge=0, le=MAX_SUPPLY)] = 0   # nanoFIL for the miner actor


class ChainPushed(Msg):
    msg_id: str
    nonce: int


class ChainSimulate(Msg):
    """As ChainPush, but only the receipt it would get in the next tipset; nothing changes."""
    sender: str
    to: int
    method: str
    value: Annotated[int, msgspec.Meta(ge=0, le=MAX_SUPPLY)] = 0


class ChainSimulated(Msg):
    receipt: Receipt


class ChainGetNonce(Msg):
    sender: str


class ChainNonce(Msg):
    sender: str
    nonce: int                         # the next nonce (counting the pool)


class ChainLookup(Msg):
    msg_id: str


class ChainMessageStatus(Msg):
    lookup: MessageLookup


# -- RPC: miner state ------------------------------------------------------------------------------

class ChainListMiners(Msg):
    pass


class ChainMiners(Msg):
    miners: list[MinerView]


class ChainGetMiner(Msg):
    miner: int


class ChainMiner(Msg):
    miner: MinerView


class ChainGetDeadline(Msg):
    miner: int
    epoch: int = -1                    # -1: the head


class ChainDeadline(Msg):
    info: DeadlineInfo


class ChainGetPartitions(Msg):
    miner: int
    deadline: int


class ChainPartitions(Msg):
    deadline: DeadlineView


class ChainGetSector(Msg):
    miner: int
    sector: int


class ChainSector(Msg):
    sector: SectorView | None


class ChainGetPreCommit(Msg):
    miner: int
    sector: int


class ChainPreCommit(Msg):
    precommit: PreCommitOnChain | None
