"""The sealing state machine's bus messages: operator RPC served by the manager (role
`manager`, so "@manager"), and the `sealing.sector` event published after every
committed change. Refusals are bus Errors with code "invalid" (a bad request: no such
sector or state, a piece too large) or "not_ready" (the state machine is starting)."""
from __future__ import annotations

import msgspec

from zqnode.bus.codec import Msg

TOPIC_SECTOR = "sealing.sector"
NOT_READY = "not_ready"


class SectorSummary(msgspec.Struct, kw_only=True, frozen=True):
    number: int
    state: str
    kind: str
    paused: bool
    retries: int
    last_error: str
    updated: float
    created: float
    pieces: int                        # deal pieces added (fillers not counted)
    pending: int
    ticket_epoch: int
    precommit_epoch: int
    seed_epoch: int
    commit_epoch: int


class SealingSectorChanged(Msg):
    """Event `sealing.sector`: a sector's new state, committed."""
    sector: SectorSummary
    prev: str
    event: str


class SealingPledge(Msg):
    count: int = 1


class SealingPledged(Msg):
    numbers: list[int]


class SealingAddPiece(Msg):
    """A deal piece: its bytes travel as the first buffer frame."""
    name: str = ""


class SealingPieceAssigned(Msg):
    sector: int
    piece_cid: str
    payload_size: int
    padded_size: int
    offset: int                        # where AddPiece will put it (padded bytes)


class SealingList(Msg):
    states: list[str] = []             # empty: every state


class SealingSectors(Msg):
    sectors: list[SectorSummary]
    head: int                          # the chain epoch the state machine knows


class SealingStatus(Msg):
    number: int
    log: bool = False


class SealingSectorStatus(Msg):
    info: dict                         # the sector's record (bytes as hex)
    log: list[dict] = []


class SealingResume(Msg):
    number: int
    state: str = ""


class SealingRemove(Msg):
    number: int


class SealingTerminate(Msg):
    """Terminate a proven sector on chain (TerminateSectors), then remove it."""
    number: int


class SealingExtend(Msg):
    """Move a proven sector's expiration later (ExtendSectorExpiration2)."""
    number: int
    expiration: int


class SealingExtended(Msg):
    number: int
    expiration: int
    msg_id: str


class SealingRebuild(Msg):
    number: int


class SealingSnapUp(Msg):
    """SnapDeals: a proving CC sector takes the next deal pieces into its replica."""
    number: int


class SealingAbortUpgrade(Msg):
    """Give a SnapDeals upgrade up (before its update is sent): the CC sector proves on."""
    number: int


class SealingUnseal(Msg):
    number: int
    out: str                           # a path on the manager's machine
    piece: int = -1


class SealingSectorState(Msg):
    number: int
    state: str
    paused: bool
