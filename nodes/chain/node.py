"""The chain node's shell: a tipset every epoch on a Trio timer, SQLite persistence under
the node's repo (chain.sqlite), `chain.head` events, and the RPC of nodes.wire.chain.
A restarted node continues from the persisted head; time spent down is not made up
(there are no null rounds: the next tipset is simply the next epoch).

The chain never goes back silently: the highest epoch it published is written (and
synced) beside the database before the event goes out, and a database found below it
(a lost or damaged WAL, a restored backup) stops the start with an error, unless
`[chain] allow_rollback` says to go on."""
from __future__ import annotations

import importlib.util
import logging
import pathlib
import time
from typing import Callable

import msgspec
import trio

from zqnode.bus.codec import ErrorCode
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import Peer, Refused, Request, refusing
from zqnode.nodes.wire import chain as W
from zqnode.nodes.chain.core import Chain, HeadChange, NotFound, ReorgError, Verifiers
from zqnode.nodes.chain.funds import format_fil
from zqnode.nodes.chain.messages import Message, MessageError, summary
from zqnode.nodes.chain.randomness import RandomnessError, default_source
from zqnode.nodes.chain.store import ChainStore
from zqnode.nodes.chain.config import ChainConfig
from zqnode.nodes import observe
from zqnode.nodes import preflight
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.observe.http import parse_listen
from zqnode.proofs.files import write_atomic

log = logging.getLogger("zqnode.chain")

PUBLISHED_HEAD = "published-head"      # in the repo: the highest epoch announced


class NotOnThisChain(ReorgError, MessageError):
    """A devnet's write (reorg, fund) this chain does not allow: refused as a permission."""


class ChainRollback(ValueError):
    """The database is below a head this chain already published."""

def make_verifiers(name: str) -> Verifiers:
    from zqnode.nodes.chain import verifiers
    return {"proofs": verifiers.proofs_verifiers, "fake": lambda: verifiers.FAKE,
            "accept": verifiers.accept_all}[name]()


class ChainNode:
    def __init__(self, me: NodeIdentity, cfg: ChainConfig, *,
                 verifiers: Verifiers | None = None, clock: Callable[[], float] = time.time):
        self.me, self.chain_cfg = me, cfg
        self.verifiers = verifiers or make_verifiers(self.chain_cfg.verifier)
        self.clock = clock
        self.chain: Chain | None = None
        self._published = -1               # the highest epoch announced
        self.store: ChainStore | None = None
        self.lotus = None                  # the Lotus API server, with [chain] lotus_listen
        self.lotus_url = ""
        self._lock = trio.Lock()           # one head change at a time, published in order
        self.peer = Peer(name=me.name, role="chain", cfg=me.bus)
        for kind, handler in self._handlers().items():
            self.peer.on(kind, handler)
        # who may ask what: reads are open to reader keys, a reorg is an operator's
        self.peer.allow({**{k: ANYONE for k in (
            W.ChainGetHead, W.ChainGetTipset, W.ChainGetRandomness, W.ChainGetNonce,
            W.ChainLookup, W.ChainListMiners, W.ChainGetMiner, W.ChainGetDeadline,
            W.ChainGetPartitions, W.ChainGetSector, W.ChainGetPreCommit)},
            W.ChainReorg: ADMIN, W.ChainFund: ADMIN, W.ChainPush: ("manager", "poster"),
            W.ChainSimulate: ("manager", "poster")})
        observe.chain(self)

    @property
    def epoch_seconds(self) -> float:
        return self.chain_cfg.epoch_seconds or self.chain.policy.epoch_seconds

    @property
    def reorg_allowed(self) -> bool:
        allow = self.chain_cfg.allow_reorg
        return self.chain.policy.devnet if allow is None else allow

    # -- start-up -------------------------------------------------------------------------
    def open(self) -> Chain:
        """Load the chain from the repo, or create it there."""
        repo = pathlib.Path(self.me.repo)
        repo.mkdir(parents=True, exist_ok=True)
        self.store = ChainStore(repo / "chain.sqlite")
        wanted = self.chain_cfg.genesis
        stored = self.store.genesis()
        if stored is None:
            genesis = msgspec.structs.replace(wanted, timestamp=self.clock())
            self.chain = Chain(genesis, self.verifiers)
            self.store.create(self.chain)
            log.info("new %s chain in %s", genesis.network, repo)
        else:
            same = msgspec.structs.replace(wanted, timestamp=stored.timestamp) == stored
            if not same:
                raise ValueError(f"{self.store.path} holds another chain (genesis {stored}); "
                                 f"the configuration asks for {wanted}")
            self.chain = self.store.load(stored, self.verifiers)
            log.info("chain resumed at epoch %d from %s", self.chain.head.epoch, repo)
        self._published = self._check_published(repo)
        if self.chain_cfg.verifier == "proofs":
            for module in ("zqnode.proofs.porep", "zqnode.proofs.post"):
                if importlib.util.find_spec(module) is None:
                    log.warning("%s is missing: messages whose proofs it checks will fail", module)
        return self.chain

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.chain is None:
            self.open()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.peer.run)
                if self.chain_cfg.lotus_listen:
                    self.lotus_url = await nursery.start(self._serve_lotus)
                async with self._lock:
                    await self._publish(HeadChange(applied=[self.chain.head]))
                task_status.started(self)
                await self._produce_forever()
        finally:
            self.store.close()

    async def _serve_lotus(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The Lotus JSON-RPC API on [chain] lotus_listen; its admin token in the repo."""
        from zqnode.nodes.chain.lotus.auth import Tokens
        from zqnode.nodes.chain.lotus.devnet_api import DevnetLotusAPI
        from zqnode.nodes.chain.lotus.server import LotusServer
        tokens = Tokens.in_repo(self.me.repo, self.chain_cfg.lotus_token or None)
        self.lotus = LotusServer(DevnetLotusAPI(lambda: self.chain, self.epoch_seconds, self),
                                 tokens)
        host, port = parse_listen(self.chain_cfg.lotus_listen, "lotus_listen")
        preflight.check_free([("the Lotus API", self.chain_cfg.lotus_listen)])
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(self.lotus.serve, host, port)
            url = urls[0].replace("http://", "ws://", 1) + "/rpc/v1"
            log.info("Lotus API on %s", url)
            task_status.started(url)

    async def _produce_forever(self) -> None:
        next_at = trio.current_time()
        while True:
            next_at = max(next_at + self.epoch_seconds, trio.current_time())
            await trio.sleep_until(next_at)
            async with self._lock:
                change = self.chain.produce(self.clock())
                self.store.save_change(self.chain, change)
                await self._publish(change)

    def _check_published(self, repo: pathlib.Path) -> int:
        """The highest epoch published before; refuses a database below it."""
        try:
            published = int((repo / PUBLISHED_HEAD).read_text().split()[0])
        except FileNotFoundError:
            return -1
        except (OSError, ValueError, IndexError) as e:
            raise ChainRollback(f"{repo / PUBLISHED_HEAD} cannot be read ({e}): move it "
                                "away to start from the database's head") from None
        head = self.chain.head.epoch
        if head < published:
            why = (f"{self.store.path} is at epoch {head}, below epoch {published} that this "
                   "chain already published: its last changes were lost (a damaged or "
                   "deleted WAL, a restored backup)")
            if not self.chain_cfg.allow_rollback:
                raise ChainRollback(f"{why}. Every node that followed it has seen a head that "
                                    "is gone; to go on from here anyway, set [chain] "
                                    "allow_rollback = true for one start")
            log.error("%s; going on from epoch %d as [chain] allow_rollback says", why, head)
            self.peer.set_problem("rollback", f"{why}; went on from epoch {head}")
            self._mark_published(head, force=True, repo=repo)
            return head
        return published

    def _mark_published(self, epoch: int, *, force: bool = False, repo=None) -> None:
        if epoch > self._published or force:
            write_atomic(pathlib.Path(repo or self.me.repo) / PUBLISHED_HEAD, f"{epoch}\n".encode())
            self._published = epoch

    async def _publish(self, change: HeadChange) -> None:
        self._mark_published(self.chain.head.epoch)          # synced before anyone hears of it
        if self.lotus is not None:
            self.lotus.head_changed(change.reverted, change.applied)
        await self.peer.publish(W.TOPIC_HEAD, W.ChainHeadChanged(
            reverted=[summary(t) for t in change.reverted], applied=[summary(t) for t in change.applied]))

    # -- RPC ------------------------------------------------------------------------------------
    def _handlers(self) -> dict:
        return {W.ChainGetHead: self._head, W.ChainGetTipset: self._tipset,
                W.ChainGetRandomness: self._randomness, W.ChainReorg: self._reorg, W.ChainFund: self._fund,
                W.ChainPush: self._push, W.ChainSimulate: self._simulate,
                W.ChainGetNonce: self._nonce, W.ChainLookup: self._lookup,
                W.ChainListMiners: self._miners, W.ChainGetMiner: self._miner,
                W.ChainGetDeadline: self._deadline, W.ChainGetPartitions: self._partitions,
                W.ChainGetSector: self._sector, W.ChainGetPreCommit: self._precommit}

    async def _head(self, req: Request) -> W.ChainHeadInfo:
        c = self.chain
        return W.ChainHeadInfo(head=summary(c.head), network=c.policy.name,
                               epoch_seconds=self.epoch_seconds, finality=c.policy.chain_finality,
                               genesis=c.tipsets[0].key, miners=sorted(c.state.miners),
                               pool=len(c.pool), fork=c.fork, reorg_allowed=self.reorg_allowed,
                               base_fee=c.state.base_fee)

    async def _tipset(self, req: Request) -> W.ChainTipset:
        with _refusals():
            return W.ChainTipset(tipset=summary(self.chain.tipset(req.body.epoch)))

    async def _randomness(self, req: Request) -> W.ChainRandomness:
        b = req.body
        with _refusals():
            rand = self.chain.randomness(b.domain, b.epoch, b.entropy, b.source)
            return W.ChainRandomness(randomness=rand, epoch=b.epoch,
                                     source=b.source or default_source(b.domain),
                                     tipset=self.chain.tipsets[max(b.epoch, 0)].key)

    async def reorg(self, depth: int, by: str) -> HeadChange:
        """Replace the last `depth` tipsets with new empty ones (ReorgError: refused): the
        bus's ChainReorg and the devnet Lotus API's Zqnode.DevnetReorg."""
        if not self.reorg_allowed:
            raise NotOnThisChain(f"reorg is not allowed on this {self.chain.policy.name} chain")
        async with self._lock:
            change = self.chain.reorg(depth, self.clock())
            self.store.save_change(self.chain, change)
            log.warning("reorg of depth %d requested by %s", depth, by)
            await self._publish(change)
        return change

    async def fund(self, address: str, amount: int, by: str) -> int:
        """Devnet: add `amount` nanoFIL to `address` (MessageError: refused); its new
        balance. The bus's ChainFund and the devnet Lotus API's Zqnode.DevnetFund."""
        if not self.chain.policy.devnet:
            raise NotOnThisChain(f"funds are added on a devnet only, not on this {self.chain.policy.name} chain")
        async with self._lock:                # between tipsets, persisted as the head's state
            balance = self.chain.fund(address, amount)
            self.store.save_state(self.chain)
        log.warning("%s added %s to %s", by, format_fil(amount), address)
        return balance

    async def _reorg(self, req: Request) -> W.ChainReorged:
        with _refusals():
            change = await self.reorg(req.body.depth, req.sender)
        return W.ChainReorged(reverted=[summary(t) for t in change.reverted],
                              applied=[summary(t) for t in change.applied])

    async def _fund(self, req: Request) -> W.ChainFunded:
        with _refusals():
            balance = await self.fund(req.body.address, req.body.amount, req.sender)
        return W.ChainFunded(address=req.body.address, balance=balance)

    def _message(self, req: Request, nonce: int = 0) -> Message:
        b = req.body
        if not req.buffers:
            raise Refused(ErrorCode.INVALID, f"{type(b).__name__} carries the method parameters "
                                             "as its first buffer; none came")
        return Message(sender=b.sender, to=b.to, method=b.method, params=bytes(req.buffers[0]),
                       nonce=nonce, value=b.value)

    async def push_message(self, msg: Message, uuid: str = "") -> Message:
        """Pool `msg` (MessageError: refused, nothing changed), persisted before the sender
        hears of it: the bus's ChainPush and the Lotus API's MpoolPushMessage."""
        known = self.chain.sent.get(uuid)
        msg = self.chain.push(msg, uuid)
        if msg.id != known:                       # a new message
            try:
                self.store.add_message(msg, uuid)
            except BaseException:
                self.chain.pool.pop(msg.id, None)
                self.chain.sent.pop(uuid, None)
                if known is not None:
                    self.chain.sent[uuid] = known
                raise
        return msg

    async def _push(self, req: Request) -> W.ChainPushed:
        with _refusals():
            msg = await self.push_message(self._message(req, req.body.nonce), req.body.uuid)
        return W.ChainPushed(msg_id=msg.id, nonce=msg.nonce)

    async def _simulate(self, req: Request) -> W.ChainSimulated:
        with _refusals():
            return W.ChainSimulated(receipt=self.chain.simulate(self._message(req)))

    async def _nonce(self, req: Request) -> W.ChainNonce:
        return W.ChainNonce(sender=req.body.sender, nonce=self.chain.next_nonce(req.body.sender))

    async def _lookup(self, req: Request) -> W.ChainMessageStatus:
        return W.ChainMessageStatus(lookup=self.chain.lookup(req.body.msg_id))

    async def _miners(self, req: Request) -> W.ChainMiners:
        return W.ChainMiners(miners=[self.chain.miner_view(m) for m in sorted(self.chain.state.miners)])

    async def _miner(self, req: Request) -> W.ChainMiner:
        with _refusals():
            return W.ChainMiner(miner=self.chain.miner_view(req.body.miner))

    async def _deadline(self, req: Request) -> W.ChainDeadline:
        b = req.body
        with _refusals():
            return W.ChainDeadline(info=self.chain.deadline(b.miner, None if b.epoch < 0 else b.epoch))

    async def _partitions(self, req: Request) -> W.ChainPartitions:
        with _refusals():
            return W.ChainPartitions(deadline=self.chain.deadline_view(req.body.miner, req.body.deadline))

    async def _sector(self, req: Request) -> W.ChainSector:
        with _refusals():
            return W.ChainSector(sector=self.chain.sector(req.body.miner, req.body.sector))

    async def _precommit(self, req: Request) -> W.ChainPreCommit:
        with _refusals():
            return W.ChainPreCommit(precommit=self.chain.precommit(req.body.miner, req.body.sector))


def _refusals():
    """The core's ValueErrors as typed bus errors."""
    return refusing((NotFound, W.NOT_FOUND), (NotOnThisChain, ErrorCode.PERMISSION),
                    ((MessageError, RandomnessError, ReorgError), ErrorCode.INVALID))
