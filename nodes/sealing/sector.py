"""What the state machine keeps per sector (persisted as it is after every event)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.sealing import states as S


def cause_of(miner: int, number: int) -> str:
    """The sector's cause id: every event and command about it carries this."""
    return f"s-{miner}-{number}"


class Piece(msgspec.Struct, kw_only=True, frozen=True):
    comm_p: bytes
    payload_size: int                  # the piece's own bytes
    padded_size: int                   # its size in the sector (fr32-padded, a power of two)
    offset: int = -1                   # padded bytes from the sector's start (-1: not placed yet)
    path: str = ""                     # where the manager keeps the piece's bytes ("": filler)

    @property
    def filler(self) -> bool:
        return not self.path


class SectorInfo(msgspec.Struct, kw_only=True):
    miner: int
    number: int
    seal_proof: int
    sector_size: int
    kind: str                          # "cc" (committed capacity) | "deal"
    state: str = S.NEW
    step: int = 0                      # +1 whenever the handler runs anew: older commands are stale
    created: float = 0.0
    updated: float = 0.0
    # deals
    pieces: list[Piece] = []           # added, in order (Packing appends the zero fillers)
    pending: list[Piece] = []          # assigned, waiting for AddPiece
    deals_since: float = 0.0           # when the first piece was assigned (WaitDeals timer)
    pack_requested: bool = False
    # sealing
    ticket: bytes = b""
    ticket_epoch: int = -1
    comm_d: bytes = b""
    comm_r: bytes = b""
    precommit_msg: str = ""
    batch: str = ""                    # the PreCommit batch it is in, once formed
    batch_since: float = 0.0           # when it began to wait for a batch
    precommit_epoch: int = -1
    seed: bytes = b""
    seed_epoch: int = -1
    proof: bytes = b""
    commit_msg: str = ""
    commit_epoch: int = -1
    terminate_msg: str = ""
    # failures (Lotus's counters, and the back-off)
    pc1_fails: int = 0
    pc2_fails: int = 0
    invalid_proofs: int = 0
    retries: int = 0                   # consecutive errors
    retry_at: float = 0.0              # the handler waits until then
    paused: bool = False               # retries used up: waits for an operator
    last_error: str = ""
    # SnapDeals: a CC sector taking deal data; comm_r stays the chain's until the update is final
    key_pieces: list[Piece] = []       # the CC sector's layout, kept while it is upgraded
    update_comm_d: bytes = b""
    update_comm_r: bytes = b""
    update_proof: bytes = b""
    update_msg: str = ""
    update_sent: bool = False          # a ProveReplicaUpdates3 went out: no abort any more
    update_epoch: int = -1             # when ProveReplicaUpdates3 landed
    # plans
    rebuild_added: int = 0             # deal pieces added again by a rebuild
    unseal_piece: int = -1             # -1: the whole sector
    unseal_out: str = ""

    @property
    def cause(self) -> str:
        return cause_of(self.miner, self.number)

    def copy(self) -> "SectorInfo":
        return _dec.decode(_enc.encode(self))

    def deal_pieces(self) -> list[Piece]:
        return [p for p in self.pieces if not p.filler]


class LogEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One event applied to a sector: what it was, the states before and after, and a note
    (a decision, an error)."""
    ts: float
    step: int
    event: str                         # the event's kind
    data: dict                         # its fields (bytes as hex)
    prev: str
    state: str
    note: str = ""


class MessageFact(msgspec.Struct, kw_only=True, frozen=True):
    status: str = "none"               # none (we sent nothing) | pending | landed | unknown
    exit_code: int = 0
    error: str = ""


class PreCommitFact(msgspec.Struct, kw_only=True, frozen=True):
    comm_r: bytes
    seal_rand_epoch: int
    precommit_epoch: int
    seed_epoch: int
    prove_by: int


class ChainFacts(msgspec.Struct, kw_only=True, frozen=True):
    """What the chain says about a sector, gathered by the shell for a decision."""
    head: int
    precommit_msg: MessageFact = MessageFact()
    commit_msg: MessageFact = MessageFact()
    precommit: PreCommitFact | None = None     # the sector's pre-commit on chain
    on_chain: bool = False                     # proven: a sector of the miner
    activation: int = -1                       # on chain: the epoch it was proven
    ticket_matches: bool | None = None         # the chain's ticket at our ticket epoch is ours
    seed_matches: bool | None = None           # the chain's seed at the pre-commit's seed epoch is ours
    proof_valid: bool | None = None            # our proof verifies with the chain's values


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(SectorInfo)
