"""What the sealing state machine and the poster need from a chain (`ChainAPI`), and
`BusChainAPI`, which asks the chain node over the bus, and `MessageSender`, the one way a
node sends messages. A watcher of an external Lotus node can implement the same protocol
later.

    api = BusChainAPI(peer)
    async with api.notify() as updates:
        async for u in updates:            # the first is the current head (u.current)
            ...
    msg = await api.push(Message.call(worker, miner, params))   # the pool assigns the nonce
    landed = await api.wait(msg.id, confidence=5)
"""
from __future__ import annotations

import contextlib
import logging
import uuid as uuids
from dataclasses import dataclass, field
from typing import AsyncContextManager, AsyncIterator, Awaitable, Callable, Protocol, TypeVar

import msgspec
import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.peer import Peer
from zqnode.bus.retry import backoff
from zqnode.nodes.sqlite_store import SqliteStore
from zqnode.nodes.wire import chain as W
from zqnode.nodes.chain.messages import Message, MessageLookup, Receipt, TipsetSummary
from zqnode.nodes.chain.miner import DeadlineView, MinerView, PreCommitOnChain, SectorView
from zqnode.nodes.chain.policy import DeadlineInfo


CHAIN_RETRY_S = (0.5, 10.0)            # back-off while the chain does not answer


class MessageUnknown(LookupError):
    """The chain has the message neither in a tipset nor in its pool."""


@dataclass(frozen=True)
class HeadUpdate:
    reverted: list[TipsetSummary] = field(default_factory=list)   # newest first
    applied: list[TipsetSummary] = field(default_factory=list)    # oldest first
    current: bool = False    # a snapshot (the first update, or after missed events): rebuild

    @property
    def head(self) -> TipsetSummary:
        return self.applied[-1]


class ChainAPI(Protocol):
    async def head(self) -> TipsetSummary: ...
    def notify(self) -> AsyncContextManager[AsyncIterator[HeadUpdate]]: ...
    async def tipset(self, epoch: int) -> TipsetSummary: ...
    async def randomness(self, domain: int, epoch: int, entropy: bytes = b"",
                         source: str = "") -> bytes: ...
    async def nonce(self, sender: str) -> int: ...
    async def push(self, msg: Message, uuid: str = "") -> Message: ...
    async def simulate(self, msg: Message) -> Receipt: ...
    async def lookup(self, msg_id: str) -> MessageLookup: ...
    async def wait(self, msg_id: str, confidence: int) -> MessageLookup: ...
    async def miners(self) -> list[MinerView]: ...
    async def miner(self, miner: int) -> MinerView: ...
    async def deadline(self, miner: int, epoch: int | None = None) -> DeadlineInfo: ...
    async def partitions(self, miner: int, deadline: int) -> DeadlineView: ...
    async def sector(self, miner: int, number: int) -> SectorView | None: ...
    async def precommit(self, miner: int, number: int) -> PreCommitOnChain | None: ...


class BusChainAPI:
    """ChainAPI over a bus Peer. Refusals raise bus.codec.RemoteError (code "invalid",
    "not_found" or "permission"); a chain that does not answer raises CallTimeout."""

    def __init__(self, peer: Peer, target: str = "@chain", timeout: float | None = None):
        self.peer, self.target, self.timeout = peer, target, timeout

    async def _call(self, msg, buffers=()):
        return await self.peer.call(self.target, msg, buffers=buffers, timeout=self.timeout)

    async def info(self) -> W.ChainHeadInfo:
        return await self._call(W.ChainGetHead())

    async def head(self) -> TipsetSummary:
        return (await self.info()).head

    @contextlib.asynccontextmanager
    async def notify(self):
        # head changes only from a chain node: any other key could move our head anywhere
        with self.peer.subscribe(W.TOPIC_HEAD, kinds=[W.ChainHeadChanged], roles=["chain"]) as sub:
            updates = self._updates(sub)
            try:
                yield updates
            finally:
                await updates.aclose()

    async def _updates(self, sub) -> AsyncIterator[HeadUpdate]:
        last = await self.head()                    # subscribed first: nothing falls between
        yield HeadUpdate(applied=[last], current=True)
        async for ev in sub:
            if ev.gap or ev.reset:                  # missed events: start again from a snapshot
                last = await self.head()
                yield HeadUpdate(applied=[last], current=True)
                continue
            top = ev.body.applied[-1]
            # events from before the snapshot: heights never drop, and a reorg keeps its height
            if top.epoch < last.epoch or top.key == last.key:
                continue
            last = top
            yield HeadUpdate(reverted=ev.body.reverted, applied=ev.body.applied)

    async def tipset(self, epoch: int) -> TipsetSummary:
        return (await self._call(W.ChainGetTipset(epoch=epoch))).tipset

    async def randomness(self, domain: int, epoch: int, entropy: bytes = b"", source: str = "") -> bytes:
        r = await self._call(W.ChainGetRandomness(domain=int(domain), epoch=epoch, entropy=entropy,
                                                  source=source))
        return r.randomness

    async def nonce(self, sender: str) -> int:
        return (await self._call(W.ChainGetNonce(sender=sender))).nonce

    async def push(self, msg: Message, uuid: str = "") -> Message:
        """The message as the pool took it (with its nonce; -1 asks the pool for the next)."""
        r = await self._call(W.ChainPush(sender=msg.sender, to=msg.to, method=msg.method,
                                         nonce=msg.nonce, uuid=uuid, value=msg.value), buffers=[msg.params])
        pooled = msgspec.structs.replace(msg, nonce=r.nonce)
        if pooled.id != r.msg_id:
            raise RemoteError(ErrorCode.INVALID, f"the chain pooled {r.msg_id}, not the message sent ({pooled.id})")
        return pooled

    async def simulate(self, msg: Message) -> Receipt:
        r = await self._call(W.ChainSimulate(sender=msg.sender, to=msg.to, method=msg.method,
                                             value=msg.value), buffers=[msg.params])
        return r.receipt

    async def lookup(self, msg_id: str) -> MessageLookup:
        return (await self._call(W.ChainLookup(msg_id=msg_id))).lookup

    async def wait(self, msg_id: str, confidence: int) -> MessageLookup:
        """Once the message is in a tipset with `confidence` tipsets on top of it. A reorg
        that reverts it sends it back to the pool, and waiting goes on."""
        async with self.notify() as updates:
            async for _ in updates:
                look = await self.lookup(msg_id)
                if look.status == "unknown":
                    raise MessageUnknown(f"the chain knows no message {msg_id}")
                if look.status == "landed" and look.confirmations >= confidence:
                    return look
        raise AssertionError("unreachable: head updates do not end")

    async def miners(self) -> list[MinerView]:
        return (await self._call(W.ChainListMiners())).miners

    async def miner(self, miner: int) -> MinerView:
        return (await self._call(W.ChainGetMiner(miner=miner))).miner

    async def deadline(self, miner: int, epoch: int | None = None) -> DeadlineInfo:
        r = await self._call(W.ChainGetDeadline(miner=miner, epoch=-1 if epoch is None else epoch))
        return r.info

    async def partitions(self, miner: int, deadline: int) -> DeadlineView:
        return (await self._call(W.ChainGetPartitions(miner=miner, deadline=deadline))).deadline

    async def sector(self, miner: int, number: int) -> SectorView | None:
        return (await self._call(W.ChainGetSector(miner=miner, sector=number))).sector

    async def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        return (await self._call(W.ChainGetPreCommit(miner=miner, sector=number))).precommit

    async def reorg(self, depth: int) -> W.ChainReorged:
        """Devnet only: not part of ChainAPI."""
        return await self._call(W.ChainReorg(depth=depth))

    async def fund(self, address: str, amount: int) -> W.ChainFunded:
        """Devnet only: not part of ChainAPI."""
        return await self._call(W.ChainFund(address=address, amount=amount))


class MessageSender:
    """The one way a node sends messages. The chain assigns each nonce, so every node that
    sends from an address shares one sequence (Lotus's MpoolPushMessage); a uuid written
    to the node's store before the push makes a retry, after a crash or a lost answer, the
    same message, never a second one (Lotus's MsgUuid)."""
    SCHEMA = ("CREATE TABLE IF NOT EXISTS sends (what TEXT PRIMARY KEY, uuid TEXT NOT NULL, "
              "draft TEXT NOT NULL)")

    def __init__(self, chain: ChainAPI, store: SqliteStore):
        self.chain, self.store = chain, store
        store.db.executescript(self.SCHEMA)

    async def send(self, msg: Message, what: str, record: Callable[[Message], None]) -> Message:
        """Push `msg` for `what` (the caller's name of this send, e.g. a sector's PreCommit)
        and `record` the pooled message in the store, in the transaction that ends the send.
        An unfinished send of the same message for `what` goes on under its uuid; a refusal
        raises RemoteError and the next send for `what` is a new message."""
        draft = msg.id                     # before the pool gives it a nonce
        row = self.store.db.execute("SELECT uuid, draft FROM sends WHERE what = ?", (what,)).fetchone()
        if row is not None and row[1] == draft:
            uuid = row[0]
        else:
            uuid = uuids.uuid4().hex
            self.store.db.execute("INSERT OR REPLACE INTO sends VALUES (?, ?, ?)", (what, uuid, draft))
        try:
            pooled = await self.chain.push(msg, uuid)
        except RemoteError as e:
            if not e.retry:              # refused; a retryable error may have been pooled: same uuid next time
                self.store.db.execute("DELETE FROM sends WHERE what = ?", (what,))
            raise
        with self.store.transaction():
            record(pooled)
            self.store.db.execute("DELETE FROM sends WHERE what = ?", (what,))
        return pooled


T = TypeVar("T")


async def until_answered(ask: Callable[[], Awaitable[T]], log: logging.Logger,
                         refused: Callable[[str], Exception]) -> T:
    """Ask the chain until it answers, backing off. No chain yet is a normal state (a
    cluster started piece by piece): said once at INFO. A refusal (no such miner) is final:
    `refused(why)` is raised."""
    said = False
    for delay in backoff(*CHAIN_RETRY_S):
        try:
            return await ask()
        except RemoteError as e:
            if e.code in (ErrorCode.INVALID, "not_found"):
                raise refused(f"the chain refused: {e.message}") from None
            why = e
        except Exception as e:
            why = e
        log.log(logging.DEBUG if said else logging.INFO, "waiting for the chain (%s: %s)",
                type(why).__name__, why)
        said = True
        await trio.sleep(delay)
    raise AssertionError("unreachable: back-off does not end")

