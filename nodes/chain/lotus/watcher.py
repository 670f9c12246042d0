"""The chain role on a Lotus node (Lotus, Venus or Forest serve the same API):
`zqnode start --role chain --lotus ws://HOST:1234/rpc/v1 --lotus-token FILE`.

It follows the node's head with ChainNotify (after a dropped connection it connects again
and resyncs, no head change lost or doubled) and answers the bus's chain RPC
(nodes/wire/chain.py) from the node, so the sealing node and the poster work unchanged.
Messages go out with MpoolPushMessage: the node's wallet signs, [chain] max_fee caps the
fee. A message's zqnode id is kept with its CID in REPO/watcher.sqlite, so a lookup finds
it after a restart.

Following a zqnode devnet, `zqnode chain reorg|fund` go to it (its Zqnode.Devnet*
methods). On a network that is not a zqnode devnet, ProveCommit and WindowPoSt messages are
refused here: they need SNARK proofs, which zqnode does not make yet, and a vanilla proof
would only burn gas."""
from __future__ import annotations

import logging
import re
import uuid as uuids
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed

from zqnode.bus.codec import ErrorCode
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import Peer, Refused, Request, refusing
from zqnode.bus.retry import doubling
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.config import ChainConfig
from zqnode.nodes.chain.core import NotFound
from zqnode.nodes.chain.filecoin import dagcbor
from zqnode.nodes.chain.filecoin.address import Address, AddressError
from zqnode.nodes.chain.filecoin.dagcbor import CborError
from zqnode.nodes.chain.filecoin.params import ParamsError, to_actor
from zqnode.nodes.chain.funds import ATTO_PER_NANO, parse_fil
from zqnode.nodes.chain.lotus import types as T
from zqnode.nodes.chain.lotus.client import LotusClient, LotusDisconnected, LotusError
from zqnode.nodes.chain.lotus.reader import LotusReader, NodeAnswerError
from zqnode.nodes.chain.lotus.follow import KEEP, FollowError, Follower, summary, tipset_key
from zqnode.nodes.chain.randomness import default_source
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.groups import unwrap
from zqnode.nodes.sqlite_store import SqliteStore
from zqnode.nodes.wire import chain as W
from zqnode.proofs import cid as cids

log = logging.getLogger("zqnode.chain.lotus")

RECONNECT_S = (1.0, 30.0)
NEEDS_SNARKS = ("ProveCommitSector", "ProveCommitSectors3", "SubmitWindowedPoSt", "ProveReplicaUpdates3")
_EXIT = re.compile(r"exit (?:\w+\()?(\d+)")


class WatcherStore(SqliteStore):
    schema = ("CREATE TABLE IF NOT EXISTS sent (msg_id TEXT PRIMARY KEY, cid TEXT NOT NULL, "
              "method TEXT NOT NULL)")

    def record(self, msg_id: str, cid: str, method: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", (msg_id, cid, method))

    def cid_of(self, msg_id: str) -> str | None:
        row = self.db.execute("SELECT cid FROM sent WHERE msg_id = ?", (msg_id,)).fetchone()
        return row[0] if row else None


def _reading():
    """The reader's refusals as typed bus errors."""
    return refusing((NotFound, W.NOT_FOUND), (NodeAnswerError, ErrorCode.INVALID))


def _unavailable() -> Refused:
    return Refused(ErrorCode.BUSY, "the chain-watcher is not connected to its Lotus node yet", retry=True)


class LotusWatcher:
    def __init__(self, me: NodeIdentity, cfg: ChainConfig):
        self.me, self.cfg = me, cfg
        self.token = Path(cfg.lotus_token_file).read_text().strip() if cfg.lotus_token_file else ""
        self.max_fee = parse_fil(cfg.max_fee) * ATTO_PER_NANO
        self.follower = Follower()
        self.lotus: LotusClient | None = None
        self.devnet = False                # the node is a zqnode devnet: vanilla proofs go
        self.network, self.block_delay, self.genesis = "", 30, ""
        self.reader = LotusReader(self._call, seal_proof=cfg.seal_proof)
        self.store: WatcherStore | None = None
        self._post_proofs: dict[int, int] = {}
        self._senders: dict[int, set] = {}         # a miner's worker and control addresses
        self.peer = Peer(name=me.name, role="chain", cfg=me.bus)
        handlers = {W.ChainGetHead: self._head, W.ChainGetTipset: self._tipset,
                    W.ChainGetRandomness: self._randomness, W.ChainGetNonce: self._nonce,
                    W.ChainPush: self._push, W.ChainSimulate: self._simulate, W.ChainLookup: self._lookup,
                    W.ChainListMiners: self._miners, W.ChainGetMiner: self._miner,
                    W.ChainGetDeadline: self._deadline, W.ChainGetPartitions: self._partitions,
                    W.ChainGetSector: self._sector, W.ChainGetPreCommit: self._precommit,
                    W.ChainReorg: self._reorg, W.ChainFund: self._fund}
        for kind, handler in handlers.items():
            self.peer.on(kind, handler)
        self.peer.allow({**{k: ANYONE for k in (
            W.ChainGetHead, W.ChainGetTipset, W.ChainGetRandomness, W.ChainGetNonce, W.ChainLookup,
            W.ChainListMiners, W.ChainGetMiner, W.ChainGetDeadline, W.ChainGetPartitions,
            W.ChainGetSector, W.ChainGetPreCommit)},
            W.ChainReorg: ADMIN, W.ChainFund: ADMIN, W.ChainPush: ("manager", "poster"),
            W.ChainSimulate: ("manager", "poster")})

    # -- following ------------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.store = WatcherStore(Path(self.me.repo) / "watcher.sqlite")
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.peer.run)
                task_status.started(self)
                await self._follow_forever()
        finally:
            self.store.close()

    async def _follow_forever(self) -> None:
        failures = 0
        while True:
            heard = self.follower.head
            log.debug("connecting to %s", self.cfg.lotus)
            try:
                async with LotusClient.connect(self.cfg.lotus, self.token) as lotus:
                    await self._session(lotus)
            except* (LotusDisconnected, LotusError, FollowError, ConnectionClosed) as group:
                why = unwrap(group)
            finally:
                self.lotus = None
            failures = 1 if self.follower.head is not heard else failures + 1   # it followed: try again soon
            delay = doubling(*RECONNECT_S, failures)
            log.warning("Lotus node %s: %s; connecting again in %.0f s", self.cfg.lotus, why, delay)
            await trio.sleep(delay)

    async def _session(self, lotus: LotusClient) -> None:
        version = await lotus.call("Version")
        self.devnet = version.Agent == "zqnode"
        self.network = self.reader.network = await lotus.call("StateNetworkName")
        self.block_delay = version.BlockDelay
        self.genesis = tipset_key((await lotus.call("ChainGetGenesis")).Cids)
        log.info("following %s (%s, %s)", self.cfg.lotus, version.Version, self.network)
        self.lotus = lotus
        while True:                        # a batch that does not fit: subscribe again, resync
            async with lotus.channel("ChainNotify") as changes:
                async for batch in changes:
                    try:
                        if batch and batch[0].Type == "current":
                            await self._current(lotus, summary(batch[0].Val))
                        else:
                            await self._publish(*self.follower.batch(batch))
                    except FollowError as e:
                        log.warning("head change out of order (%s): subscribing again", e)
                        break
            await trio.sleep(RECONNECT_S[0])

    async def _current(self, lotus: LotusClient, head) -> None:
        """A (re)subscription's snapshot: what changed since the head we published."""
        if self.follower.head is None:
            await self._publish(*self.follower.start(head))
            return
        if self.follower.head.key == head.key:
            return
        path, cur = [head], head
        while not self.follower.knows(cur.key):
            if len(path) > KEEP or not cur.parent:
                log.warning("the node's head %d is not within %d tipsets of ours: starting over",
                            head.epoch, KEEP)
                await self._publish(*self.follower.start(head))
                return
            parent = summary(await lotus.call("ChainGetTipSet", [T.Cid(c) for c in cur.parent.split(",")]))
            if parent.key != cur.parent or parent.epoch >= cur.epoch:
                raise FollowError(f"the node answered tipset {parent.epoch} for the parent of {cur.epoch}")
            cur = parent
            path.append(cur)
        await self._publish(*self.follower.resync(list(reversed(path))))

    async def _publish(self, reverted, applied) -> None:
        if reverted or applied:
            await self.peer.publish(W.TOPIC_HEAD, W.ChainHeadChanged(reverted=reverted, applied=applied))

    # -- calls to the node ----------------------------------------------------------------------
    async def _call(self, name: str, *params):
        if self.lotus is None:
            raise _unavailable()
        try:
            return await self.lotus.call(name, *params)
        except LotusDisconnected:
            raise _unavailable() from None
        except LotusError as e:
            raise Refused(ErrorCode.INVALID, f"the Lotus node refused {name}: {e.message}") from None

    async def _head(self, req: Request) -> W.ChainHeadInfo:
        if self.follower.head is None:
            raise _unavailable()
        ts = await self._call("ChainHead")
        fee = int(ts.Blocks[0].ParentBaseFee) if ts.Blocks else 0
        return W.ChainHeadInfo(head=self.follower.head, network=self.network, epoch_seconds=float(self.block_delay),
                               finality=self.reader.policy.chain_finality, genesis=self.genesis,
                               miners=list(self.cfg.miners), pool=0, fork=0, reorg_allowed=self.devnet, base_fee=fee)

    async def _tipset(self, req: Request) -> W.ChainTipset:
        return W.ChainTipset(tipset=summary(await self._call("ChainGetTipSetByHeight", req.body.epoch, [])))

    async def _randomness(self, req: Request) -> W.ChainRandomness:
        b = req.body
        source = b.source or default_source(b.domain)
        method = {"tickets": "StateGetRandomnessFromTickets", "beacon": "StateGetRandomnessFromBeacon"}.get(source)
        if method is None:
            raise Refused(ErrorCode.INVALID, f"unknown randomness source {source!r} (use tickets or beacon)")
        rand = await self._call(method, int(b.domain), b.epoch, b.entropy, [])
        key = tipset_key(await self.reader.at(max(b.epoch, 0)))
        return W.ChainRandomness(randomness=rand, epoch=b.epoch, source=source, tipset=key)

    async def _nonce(self, req: Request) -> W.ChainNonce:
        return W.ChainNonce(sender=req.body.sender, nonce=await self._call("MpoolGetNonce", req.body.sender))

    def _lotus_message(self, b, params) -> T.Message:
        method, theirs = to_actor(params, self._post_proofs.get(b.to, 0))
        return T.Message(Version=0, To=f"f0{b.to}", From=b.sender, Nonce=0, Value=str(b.value * ATTO_PER_NANO),
                         GasLimit=0, GasFeeCap="0", GasPremium="0", Method=method, Params=dagcbor.encode(theirs))

    async def _params(self, req: Request):
        b = req.body
        if not req.buffers:
            raise Refused(ErrorCode.INVALID, f"{type(b).__name__} carries the method parameters as its first "
                                             "buffer; none came")
        try:
            params = M.decode_params(b.method, bytes(req.buffers[0]))
        except M.MessageError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        if b.to not in self.cfg.miners:
            raise Refused(ErrorCode.PERMISSION, f"f0{b.to} is not one of [chain] miners "
                                                f"({', '.join(f'f0{m}' for m in self.cfg.miners) or 'none'})")
        if getattr(b, "nonce", -1) != -1:          # ChainPush's; ChainSimulate has none
            raise Refused(ErrorCode.INVALID, "the Lotus node's wallet picks the nonce: send nonce -1")
        senders = self._senders.get(b.to)
        if senders is None:
            info = await self._call("StateMinerInfo", f"f0{b.to}", [])
            senders = self._senders[b.to] = {Address.parse(a) for a in (info.Worker, *info.ControlAddresses)}
            self._post_proofs[b.to] = info.WindowPoStProofType
        try:
            sender = Address.parse(b.sender)
        except AddressError as e:
            raise Refused(ErrorCode.INVALID, f"sender {b.sender}: {e}") from None
        if sender not in senders:
            raise Refused(ErrorCode.PERMISSION, f"{b.sender} is neither the worker nor a control address "
                                                f"of f0{b.to}")
        if b.method in NEEDS_SNARKS and not self.devnet:
            raise Refused(ErrorCode.INVALID, f"{b.method} needs SNARK proofs, which zqnode does not make yet: "
                                             f"it is not sent to {self.network or 'this network'}")
        try:
            return params, self._lotus_message(b, params)
        except (ParamsError, CborError, cids.CidError) as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None

    async def _push(self, req: Request) -> W.ChainPushed:
        b = req.body
        params, msg = await self._params(req)
        spec = T.MessageSendSpec(MaxFee=str(self.max_fee), MsgUuid=_uuid(b.uuid))
        if self.lotus is None:
            raise _unavailable()
        try:
            signed = await self.lotus.call("MpoolPushMessage", msg, spec)
        except LotusDisconnected:
            raise Refused(ErrorCode.BUSY, "the connection to the Lotus node dropped during MpoolPushMessage: "
                                          "the message may be in its pool; send it again with the same uuid",
                          retry=True) from None
        except LotusError as e:
            raise Refused(ErrorCode.INVALID, f"the Lotus node refused MpoolPushMessage: {e.message}") from None
        nonce = signed.Message.Nonce
        ours = M.Message(sender=b.sender, to=b.to, method=b.method, params=bytes(req.buffers[0]),
                         nonce=nonce, value=b.value)
        cid = (signed.CID or signed.Message.CID).link
        self.store.record(ours.id, cid, b.method)          # before the sender hears of it
        log.info("%s from %s to f0%d sent as %s (nonce %d)", b.method, b.sender, b.to, cid, nonce)
        return W.ChainPushed(msg_id=ours.id, nonce=nonce)

    async def _simulate(self, req: Request) -> W.ChainSimulated:
        _, msg = await self._params(req)
        if self.lotus is None:
            raise _unavailable()
        try:
            est = await self.lotus.call("GasEstimateMessageGas", msg, None, [])
        except LotusDisconnected:
            raise _unavailable() from None
        except LotusError as e:
            code = _EXIT.search(e.message)
            if code is None:
                raise Refused(ErrorCode.INVALID, f"the Lotus node refused the message: {e.message}") from None
            return W.ChainSimulated(receipt=M.Receipt(exit_code=int(code.group(1)), error=e.message))
        return W.ChainSimulated(receipt=M.Receipt(exit_code=0, gas_used=est.GasLimit))

    async def _lookup(self, req: Request) -> W.ChainMessageStatus:
        msg_id = req.body.msg_id
        head = self.follower.head.epoch if self.follower.head else -1
        cid = self.store.cid_of(msg_id)
        if cid is None:
            return W.ChainMessageStatus(lookup=M.MessageLookup(msg_id=msg_id, status="unknown", head=head))
        found = await self._call("StateSearchMsg", [], T.Cid(cid), -1, True)
        if found is None:
            return W.ChainMessageStatus(lookup=M.MessageLookup(msg_id=msg_id, status="pending", head=head))
        r = found.Receipt
        receipt = M.Receipt(exit_code=r.ExitCode, return_value=r.Return or b"", gas_used=r.GasUsed,
                            error="" if r.ExitCode == 0 else f"exit code {r.ExitCode}")
        return W.ChainMessageStatus(lookup=M.MessageLookup(
            msg_id=msg_id, status="landed", epoch=found.Height, tipset=tipset_key(found.TipSet),
            receipt=receipt, head=max(head, found.Height)))

    # -- miners: read by nodes.chain.lotus.reader ----------------------------------------------
    async def _miners(self, req: Request) -> W.ChainMiners:
        with _reading():
            return W.ChainMiners(miners=[await self.reader.miner(m) for m in self.cfg.miners])

    async def _miner(self, req: Request) -> W.ChainMiner:
        with _reading():
            return W.ChainMiner(miner=await self.reader.miner(req.body.miner))

    async def _deadline(self, req: Request) -> W.ChainDeadline:
        with _reading():
            return W.ChainDeadline(info=await self.reader.deadline(req.body.miner, req.body.epoch))

    async def _partitions(self, req: Request) -> W.ChainPartitions:
        with _reading():
            return W.ChainPartitions(deadline=await self.reader.partitions(req.body.miner, req.body.deadline))

    async def _sector(self, req: Request) -> W.ChainSector:
        with _reading():
            return W.ChainSector(sector=await self.reader.sector(req.body.miner, req.body.sector))

    async def _precommit(self, req: Request) -> W.ChainPreCommit:
        with _reading():
            return W.ChainPreCommit(precommit=await self.reader.precommit(req.body.miner, req.body.sector))

    # -- a zqnode devnet's own -----------------------------------------------------------------
    def _devnet_only(self, what: str) -> None:
        if not self.devnet:
            raise Refused(ErrorCode.PERMISSION, f"{what} is a devnet chain's: this chain role follows a "
                                                f"Lotus node ({self.network or 'not connected yet'})")

    async def _reorg(self, req: Request) -> W.ChainReorged:
        self._devnet_only("reorg")
        changes = await self._call("DevnetReorg", req.body.depth)
        return W.ChainReorged(reverted=[summary(c.Val) for c in changes if c.Type == "revert"],
                              applied=[summary(c.Val) for c in changes if c.Type == "apply"])

    async def _fund(self, req: Request) -> W.ChainFunded:
        self._devnet_only("fund")
        b = req.body
        balance = await self._call("DevnetFund", b.address, str(b.amount * ATTO_PER_NANO))
        return W.ChainFunded(address=b.address, balance=int(balance) // ATTO_PER_NANO)


def _uuid(text: str) -> str:
    """Lotus's MsgUuid (a UUID) for zqnode's send uuid (32 hex digits, or any text)."""
    if not text:
        return "00000000-0000-0000-0000-000000000000"
    try:
        return str(uuids.UUID(hex=text))
    except ValueError:
        return str(uuids.uuid5(uuids.NAMESPACE_OID, text))

