"""The devnet chain's answers to Lotus API methods, read from its `Chain` core.

The devnet has one block per tipset and no null rounds. A tipset's block CID wraps its
key (a blake2b-256) as a dag-cbor CID, so a key and its CID name each other. Amounts are
attoFIL, as Lotus's (the core counts nanoFIL). What the devnet does not have is answered
as an empty Lotus value: no peer id, no beneficiary change, no disputable proofs.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Protocol

import trio

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import Chain, HeadChange, NotFound, ReorgError
from zqnode.nodes.chain.filecoin import dagcbor
from zqnode.nodes.chain.filecoin.address import Address, AddressError
from zqnode.nodes.chain.filecoin.dagcbor import BitField, Cid as Link
from zqnode.nodes.chain.filecoin.params import ParamsError, from_actor, return_to_actor, to_actor
from zqnode.nodes.chain.funds import ATTO_PER_NANO, gas_fee, gas_used
from zqnode.nodes.chain.lotus import types as T
from zqnode.nodes.chain.lotus.rpc import HANDLER_ERROR, RpcError
from zqnode.nodes.chain.messages import MessageError, Tipset
from zqnode.nodes.chain.randomness import RandomnessError
from zqnode.proofs.cid import CID_V1, encode_uvarint
from zqnode.proofs.params import seal_proof

NETWORK_VERSION = 25                 # the actors' rules the devnet follows (nv25)
API_VERSION = 0x020300               # Lotus's v1 full-node API version (2.3.0)
DAG_CBOR, BLAKE2B_256 = 0x71, 0xB220
NETWORK = "t"                        # a test network: Lotus shows t0100, not f0100
SYSTEM_ACTOR = "t00"
NO_UUID = "00000000-0000-0000-0000-000000000000"
MAX_WAITERS = 256                    # StateWaitMsg calls waiting at once
MAX_CONFIDENCE = 2000
SECP256K1 = 1                        # crypto.SigTypeSecp256k1: the devnet signs nothing


def fail(message: str) -> RpcError:
    return RpcError(HANDLER_ERROR, message)


def block_cid(key: str) -> T.Cid:
    """The CID of a tipset's one block, or of a message: its key (or id), a blake2b-256,
    as a dag-cbor CID."""
    raw = (encode_uvarint(CID_V1) + encode_uvarint(DAG_CBOR) + encode_uvarint(BLAKE2B_256)
           + encode_uvarint(32) + bytes.fromhex(key))
    return T.Cid(str(Link(raw)))


def key_of(cid: T.Cid) -> str:
    """The tipset key (or message id) a CID of ours names (fail: not one of ours)."""
    prefix = block_cid("00" * 32).link
    if len(cid.link) != len(prefix) or not cid.link.startswith(prefix[:9]):
        raise fail(f"{cid.link} names nothing on this chain")
    try:
        raw = Link.parse(cid.link).raw
    except ValueError:
        raise fail(f"{cid.link} is not a CID") from None
    return raw[-32:].hex()


def _derived(key: str, what: bytes) -> T.Cid:
    return block_cid(hashlib.blake2b(what + bytes.fromhex(key), digest_size=32).hexdigest())


def _bits(members) -> list[int]:
    return T.runs_json(BitField.of(members))


class ChainWrites(Protocol):
    """What changes the chain, done the chain node's way (persisted, published): nodes.chain.node.ChainNode."""
    async def push_message(self, msg: M.Message, uuid: str) -> M.Message: ...
    async def reorg(self, depth: int, by: str) -> HeadChange: ...
    async def fund(self, address: str, amount: int, by: str) -> int: ...


class DevnetLotusAPI:
    """Lotus API methods as `async def <Method>(*params)`; `chain` is read at each call.
    Without `writes` the API only reads."""

    def __init__(self, chain: Chain | Callable[[], Chain], epoch_seconds: float,
                 writes: ChainWrites | None = None):
        self._chain, self.epoch_seconds = chain, epoch_seconds
        self._writes = writes
        self._moved = trio.Event()
        self._waiters = 0
        self._index: dict[str, int] = {}          # tipset key -> epoch, for the head _indexed
        self._indexed = ""

    def head_moved(self) -> None:
        """The head changed: StateWaitMsg looks again."""
        self._moved.set()
        self._moved = trio.Event()

    @property
    def chain(self) -> Chain:
        return self._chain() if callable(self._chain) else self._chain

    # -- tipsets ----------------------------------------------------------------------------
    def tipset_json(self, ts: Tipset) -> T.TipSet:
        c = self.chain
        block = T.BlockHeader(
            Miner=SYSTEM_ACTOR, Ticket=T.Ticket(VRFProof=ts.ticket), ElectionProof=None,
            BeaconEntries=[T.BeaconEntry(Round=ts.epoch, Data=ts.beacon)], WinPoStProof=[],
            Parents=[block_cid(ts.parent)] if ts.parent else [], ParentWeight=str(ts.epoch),
            Height=ts.epoch, ParentStateRoot=_derived(ts.key, b"state"),
            ParentMessageReceipts=_derived(ts.key, b"receipts"), Messages=_derived(ts.key, b"messages"),
            BLSAggregate=None, Timestamp=int(ts.timestamp), BlockSig=None, ForkSignaling=0,
            ParentBaseFee=str(c.state.base_fee))
        return T.TipSet(Cids=[block_cid(ts.key)], Blocks=[block], Height=ts.epoch)

    def _at(self, tsk: list[T.Cid]) -> Tipset:
        """The tipset a key names (empty: the head); fail if it is not on this chain."""
        c = self.chain
        if not tsk:
            return c.head
        if len(tsk) != 1:
            raise fail("a tipset of this chain has one block")
        key = key_of(tsk[0])
        if self._indexed != c.head.key:           # once per head, not per call
            self._index = {ts.key: ts.epoch for ts in c.tipsets}
            self._indexed = c.head.key
        epoch = self._index.get(key)
        if epoch is None:
            raise fail(f"tipset {tsk[0].link} is not on this chain")
        return c.tipsets[epoch]

    async def ChainHead(self) -> T.TipSet:
        return self.tipset_json(self.chain.head)

    async def ChainGetTipSet(self, tsk) -> T.TipSet:
        if not tsk:
            raise fail("ChainGetTipSet needs a tipset key")
        return self.tipset_json(self._at(tsk))

    async def ChainGetTipSetByHeight(self, height: int, tsk) -> T.TipSet:
        start = self._at(tsk)
        if height > start.epoch:
            raise fail("looking for tipset with height greater than start point")
        if height < 0:
            raise fail(f"height {height} is negative")
        return self.tipset_json(self.chain.tipsets[height])

    async def ChainGetTipSetAfterHeight(self, height: int, tsk) -> T.TipSet:
        return await self.ChainGetTipSetByHeight(height, tsk)     # no null rounds here

    # -- randomness and versions ----------------------------------------------------------------
    async def _randomness(self, tag: int, epoch: int, entropy: bytes | None, tsk, source: str) -> bytes:
        at = self._at(tsk)
        if epoch > at.epoch:
            raise fail(f"cannot draw randomness from the future (epoch {epoch} after {at.epoch})")
        try:
            return self.chain.randomness(tag, epoch, entropy or b"", source)
        except RandomnessError as e:
            raise fail(str(e)) from None

    async def StateGetRandomnessFromTickets(self, tag, epoch, entropy, tsk) -> bytes:
        return await self._randomness(tag, epoch, entropy, tsk, "tickets")

    async def StateGetRandomnessFromBeacon(self, tag, epoch, entropy, tsk) -> bytes:
        return await self._randomness(tag, epoch, entropy, tsk, "beacon")

    async def StateNetworkVersion(self, tsk) -> int:
        self._at(tsk)
        return NETWORK_VERSION

    async def StateNetworkName(self) -> str:
        return self.chain.policy.name

    async def ChainGetGenesis(self) -> T.TipSet:
        return self.tipset_json(self.chain.tipsets[0])

    async def Version(self) -> T.Version:
        return T.Version(Version="zqnode devnet", APIVersion=API_VERSION,
                         BlockDelay=max(1, round(self.epoch_seconds)), Agent="zqnode")

    # -- actors --------------------------------------------------------------------------------
    def _miner_id(self, text: str) -> int:
        try:
            actor_id = Address.parse(text).actor_id
        except AddressError as e:
            raise fail(f"{text}: {e}") from None
        if actor_id not in self.chain.state.miners:
            raise fail(f"actor not found: {text} is not a miner on this chain")
        return actor_id

    def _miner(self, text: str, tsk):
        at = self._at(tsk)
        if at.key != self.chain.head.key:
            raise fail("this devnet answers miner state at its head only")
        return self.chain.miner_view(self._miner_id(text))

    async def StateLookupID(self, text: str, tsk) -> str:
        self._at(tsk)
        try:
            address = Address.parse(text)
        except AddressError as e:
            raise fail(f"{text}: {e}") from None
        if address.protocol != 0 or not (address.actor_id in self.chain.state.miners
                                         or self.chain.balance(text) or self.chain.balance(f"t0{address.actor_id}")):
            raise fail(f"actor not found: {text}")
        return address.text(NETWORK)

    async def StateGetActor(self, text: str, tsk) -> T.Actor:
        """A miner or an account; its code and head CIDs name what it is, not real state."""
        self._at(tsk)
        try:
            address = Address.parse(text)
        except AddressError as e:
            raise fail(f"{text}: {e}") from None
        c = self.chain
        key = c.head.key
        if address.protocol == 0 and address.actor_id in c.state.miners:
            m = c.miner_view(address.actor_id)
            return T.Actor(Code=_derived(key, b"storageminer"), Head=_derived(key, text.encode()), Nonce=0,
                           Balance=str(m.balance * ATTO_PER_NANO))
        name = self._account(text)
        if not c.balance(name) and name not in c.state.nonces:
            raise fail(f"actor not found: {text}")
        return T.Actor(Code=_derived(key, b"account"), Head=_derived(key, text.encode()),
                       Nonce=c.state.nonces.get(name, 0), Balance=str(c.balance(name) * ATTO_PER_NANO))

    async def WalletBalance(self, text: str) -> str:
        return str(self.chain.balance(self._account(text)) * ATTO_PER_NANO)

    async def StateReadState(self, text: str, tsk) -> T.ActorState:
        """A miner actor's funds (the part of its state zqnode reads); miners only."""
        m = self._miner(text, tsk)
        atto = lambda nano: str(nano * ATTO_PER_NANO)        # noqa: E731
        return T.ActorState(Balance=atto(m.balance), Code=_derived(self.chain.head.key, b"storageminer"),
                            State=T.MinerFunds(PreCommitDeposits=atto(m.precommit_deposits),
                                               LockedFunds=atto(m.vesting), InitialPledge=atto(m.initial_pledge),
                                               FeeDebt=atto(m.fee_debt)))

    async def StateMinerAvailableBalance(self, text: str, tsk) -> str:
        return str(self._miner(text, tsk).available * ATTO_PER_NANO)

    async def StateMinerInfo(self, text: str, tsk) -> T.MinerInfo:
        m = self._miner(text, tsk)
        worker = _id_text(m.worker)
        return T.MinerInfo(
            Owner=worker, Worker=worker, NewWorker="<empty>",
            ControlAddresses=[_id_text(a) for a in m.control], WorkerChangeEpoch=-1, PeerId=None,
            Multiaddrs=[], WindowPoStProofType=seal_proof(m.seal_proof).window_post_proof.id,
            SectorSize=m.sector_size, WindowPoStPartitionSectors=m.partition_sectors,
            ConsensusFaultElapsed=-1, PendingOwnerAddress=None, Beneficiary=worker,
            BeneficiaryTerm=T.BeneficiaryTerm(Quota="0", UsedQuota="0", Expiration=0),
            PendingBeneficiaryTerm=None)

    async def StateMinerProvingDeadline(self, text: str, tsk) -> T.DeadlineInfo:
        m, p = self._miner(text, tsk), self.chain.policy
        d = m.deadline
        return T.DeadlineInfo(
            CurrentEpoch=d.current_epoch, PeriodStart=d.period_start, Index=d.index, Open=d.open,
            Close=d.close, Challenge=d.challenge, FaultCutoff=d.fault_cutoff,
            WPoStPeriodDeadlines=p.period_deadlines, WPoStProvingPeriod=p.proving_period,
            WPoStChallengeWindow=p.challenge_window, WPoStChallengeLookback=p.challenge_lookback,
            FaultDeclarationCutoff=p.fault_cutoff)

    def _deadlines(self, text: str, tsk):
        m = self._miner(text, tsk)
        return [self.chain.deadline_view(m.actor_id, i) for i in range(self.chain.policy.period_deadlines)]

    async def StateMinerDeadlines(self, text: str, tsk) -> list[T.Deadline]:
        return [T.Deadline(PostSubmissions=_bits(d.posted), DisputableProofCount=0)
                for d in self._deadlines(text, tsk)]

    async def StateMinerPartitions(self, text: str, index: int, tsk) -> list[T.Partition]:
        m = self._miner(text, tsk)
        if index >= self.chain.policy.period_deadlines:
            raise fail(f"deadline {index} out of range 0..{self.chain.policy.period_deadlines - 1}")
        return [T.Partition(AllSectors=_bits(p.sectors), FaultySectors=_bits(p.faults),
                            RecoveringSectors=_bits(p.recoveries), LiveSectors=_bits(p.sectors),
                            ActiveSectors=_bits(p.active))
                for p in self.chain.deadline_view(m.actor_id, index).partitions]

    async def StateMinerSectorCount(self, text: str, tsk) -> T.SectorCount:
        m = self._miner(text, tsk)
        return T.SectorCount(Live=m.sectors, Active=m.active, Faulty=m.faulty)

    async def StateMinerPower(self, text: str, tsk) -> T.MinerPower:
        m = self._miner(text, tsk)
        total = sum(self.chain.miner_view(i).power for i in self.chain.state.miners)
        mine, all_ = T.Claim(RawBytePower=str(m.power), QualityAdjPower=str(m.power)), \
            T.Claim(RawBytePower=str(total), QualityAdjPower=str(total))
        return T.MinerPower(MinerPower=mine, TotalPower=all_, HasMinPower=m.power > 0)

    async def StateSectorPartition(self, text: str, number: int, tsk) -> T.SectorLocation | None:
        s = self.chain.sector(self._miner(text, tsk).actor_id, number)
        return None if s is None else T.SectorLocation(Deadline=s.deadline, Partition=s.partition)

    async def StateMinerFaults(self, text: str, tsk) -> list[int]:
        return _bits(n for d in self._deadlines(text, tsk) for p in d.partitions for n in p.faults)

    async def StateMinerRecoveries(self, text: str, tsk) -> list[int]:
        return _bits(n for d in self._deadlines(text, tsk) for p in d.partitions for n in p.recoveries)

    def _sector_json(self, actor_id: int, number: int) -> T.SectorOnChainInfo | None:
        s = self.chain.sector(actor_id, number)
        if s is None:
            return None
        return T.SectorOnChainInfo(
            SectorNumber=s.number, SealProof=s.seal_proof, SealedCID=T.Cid(s.sealed_cid),
            Activation=s.activation, Expiration=s.expiration, DealWeight="0", VerifiedDealWeight="0",
            InitialPledge="0", ExpectedDayReward="0", ExpectedStoragePledge="0",
            PowerBaseEpoch=s.activation, ReplacedDayReward="0",
            SectorKeyCID=T.Cid(s.sector_key_cid) if s.sector_key_cid else None, Flags=0)

    async def StateSectorGetInfo(self, text: str, number: int, tsk) -> T.SectorOnChainInfo | None:
        return self._sector_json(self._miner(text, tsk).actor_id, number)

    async def StateMinerSectors(self, text: str, runs, tsk) -> list[T.SectorOnChainInfo]:
        deadlines = self._deadlines(text, tsk)
        numbers = sorted(n for d in deadlines for p in d.partitions for n in p.sectors)
        if runs is not None:
            wanted = T.bitfield_of(runs)
            numbers = [n for n in numbers if any(s <= n < s + c for s, c in wanted.runs)]
        actor_id = self._miner_id(text)
        return [self._sector_json(actor_id, n) for n in numbers]

    async def StateSectorPreCommitInfo(self, text: str, number: int, tsk) -> T.SectorPreCommitOnChainInfo | None:
        m = self._miner(text, tsk)
        try:
            pc = self.chain.precommit(m.actor_id, number)
        except NotFound:
            return None
        if pc is None:
            return None
        info = T.SectorPreCommitInfo(SealProof=pc.seal_proof, SectorNumber=pc.sector_number,
                                     SealedCID=T.Cid(pc.sealed_cid), SealRandEpoch=pc.seal_rand_epoch,
                                     DealIDs=[], Expiration=pc.expiration, UnsealedCid=T.Cid(pc.unsealed_cid))
        return T.SectorPreCommitOnChainInfo(Info=info, PreCommitDeposit=str(pc.deposit * ATTO_PER_NANO),
                                            PreCommitEpoch=pc.precommit_epoch)

    async def _per_sector(self, text: str, amount: int, tsk) -> str:
        m = self._miner(text, tsk)
        return str(self.chain.policy.per_sector(amount, m.sector_size) * ATTO_PER_NANO)

    async def StateMinerPreCommitDepositForPower(self, text: str, info, tsk) -> str:
        return await self._per_sector(text, self.chain.policy.precommit_deposit, tsk)

    async def StateMinerInitialPledgeCollateral(self, text: str, info, tsk) -> str:
        return await self._per_sector(text, self.chain.policy.initial_pledge, tsk)

    async def MpoolGetNonce(self, text: str) -> int:
        return self.chain.next_nonce(self._account(text))

    # -- messages ------------------------------------------------------------------------------
    def _account(self, text: str) -> str:
        """The devnet's spelling (t0100) of an account Lotus names (f0100, t0100)."""
        try:
            wanted = Address.parse(text)
        except AddressError as e:
            raise fail(f"{text}: {e}") from None
        c = self.chain
        known = [a for m in c.state.miners.values() for a in (m.worker, *m.control)] + list(c.state.balances)
        for name in known:
            try:
                if Address.parse(name) == wanted:
                    return name
            except AddressError:
                continue
        return text

    def _ours(self, msg: T.Message) -> M.Message:
        """A Lotus message as the devnet's (its nonce left to the pool)."""
        try:
            to = Address.parse(msg.To).actor_id
        except AddressError as e:
            raise fail(f"To {msg.To}: {e}") from None
        value = int(msg.Value)
        if value % ATTO_PER_NANO or value < 0:
            raise fail(f"the devnet moves whole nanoFIL: Value {msg.Value} attoFIL is not a multiple of 10^9")
        try:
            params = from_actor(msg.Method, msg.Params or b"")
            return M.Message.call(self._account(msg.From), to, params, value=value // ATTO_PER_NANO)
        except (ParamsError, MessageError) as e:
            raise fail(str(e)) from None

    def lotus_message(self, msg: M.Message) -> T.Message:
        """One of the devnet's messages as Lotus shows it."""
        params = M.decode_params(msg.method, msg.params)
        post = 0
        if msg.method == "SubmitWindowedPoSt" and msg.to in self.chain.state.miners:
            post = seal_proof(self.chain.state.miners[msg.to].seal_proof).window_post_proof.id
        method, theirs = to_actor(params, post)
        return T.Message(Version=0, To=f"{NETWORK}0{msg.to}", From=_id_text(msg.sender), Nonce=max(msg.nonce, 0),
                         Value=str(msg.value * ATTO_PER_NANO), GasLimit=gas_used(msg.method, params),
                         GasFeeCap=str(self.chain.state.base_fee), GasPremium="0", Method=method,
                         Params=dagcbor.encode(theirs), CID=block_cid(msg.id))

    async def GasEstimateMessageGas(self, msg: T.Message, spec, tsk) -> T.Message:
        """The message with its gas, after running it on the head: a message the actor
        would refuse fails here with the actor's own words."""
        ours = self._ours(msg)
        receipt = self.chain.simulate(ours)
        if receipt.exit_code:
            raise fail(f"estimating gas used: message execution failed: exit {receipt.exit_code}: {receipt.error}")
        out = self.lotus_message(ours)
        out.Nonce, out.CID = msg.Nonce, None
        return out

    async def MpoolPushMessage(self, msg: T.Message, spec: T.MessageSendSpec | None) -> T.SignedMessage:
        if self._writes is None:
            raise fail("this chain takes no messages")
        ours = self._ours(msg)
        try:
            gas = gas_used(ours.method, M.decode_params(ours.method, ours.params))
        except MessageError as e:
            raise fail(f"MpoolPushMessage: {e}") from None
        fee = gas_fee(gas, self.chain.state.base_fee) * ATTO_PER_NANO
        if spec is not None and int(spec.MaxFee) and fee > int(spec.MaxFee):
            raise fail(f"the message's gas costs {fee} attoFIL at the base fee, over its MaxFee {spec.MaxFee}")
        uuid = spec.MsgUuid if spec is not None and spec.MsgUuid != NO_UUID else ""
        try:
            pooled = await self._writes.push_message(ours, uuid)
        except MessageError as e:
            raise fail(f"MpoolPushMessage: {e}") from None
        shown = self.lotus_message(pooled)
        return T.SignedMessage(Message=shown, Signature=T.Signature(Type=SECP256K1, Data=b""), CID=shown.CID)

    async def ChainGetMessage(self, cid: T.Cid) -> T.Message:
        try:
            return self.lotus_message(self.chain.message(key_of(cid)))
        except NotFound:
            raise fail(f"message {cid.link} not found") from None

    def _found(self, cid: T.Cid) -> T.MsgLookup | None:
        look = self.chain.lookup(key_of(cid))
        if look.status != "landed":
            return None
        msg = self.chain.message(look.msg_id)
        r = look.receipt
        return T.MsgLookup(Message=cid, Receipt=T.MessageReceipt(
            ExitCode=r.exit_code, Return=return_to_actor(msg.method, r.return_value), GasUsed=r.gas_used),
            ReturnDec=None, TipSet=[block_cid(look.tipset)], Height=look.epoch)

    async def StateSearchMsg(self, tsk, cid: T.Cid, limit: int, allow_replaced: bool) -> T.MsgLookup | None:
        self._at(tsk)
        return self._found(cid)

    async def StateWaitMsg(self, cid: T.Cid, confidence: int, limit: int, allow_replaced: bool) -> T.MsgLookup:
        """Once the message has `confidence` tipsets on top of it (a reorg that reverts
        it sends it back to the pool, and the wait goes on). At most MAX_WAITERS wait at
        once, for at most MAX_CONFIDENCE tipsets."""
        if confidence > MAX_CONFIDENCE:
            raise fail(f"confidence {confidence} is over {MAX_CONFIDENCE}")
        if self._waiters >= MAX_WAITERS:
            raise fail(f"{MAX_WAITERS} StateWaitMsg calls wait already: try again later")
        self._waiters += 1
        try:
            return await self._wait(cid, confidence)
        finally:
            self._waiters -= 1

    async def _wait(self, cid: T.Cid, confidence: int) -> T.MsgLookup:
        while True:
            moved = self._moved
            look = self.chain.lookup(key_of(cid))
            if look.status == "unknown":
                raise fail(f"message {cid.link} not found")
            if look.status == "landed" and look.confirmations >= confidence:
                return self._found(cid)
            await moved.wait()


    # -- a devnet's own (namespace Zqnode) ----------------------------------------------------
    def _writer(self) -> ChainWrites:
        if self._writes is None:
            raise fail("this chain takes no changes")
        return self._writes

    async def DevnetReorg(self, depth: int) -> list[T.HeadChange]:
        """`zqnode chain reorg` through the API: the changes, as ChainNotify sends them."""
        try:
            change = await self._writer().reorg(depth, "the Lotus API")
        except ReorgError as e:
            raise fail(str(e)) from None
        return ([T.HeadChange(Type="revert", Val=self.tipset_json(t)) for t in change.reverted]
                + [T.HeadChange(Type="apply", Val=self.tipset_json(t)) for t in change.applied])

    async def DevnetFund(self, address: str, atto: str) -> str:
        """`zqnode chain fund` through the API: add `atto` attoFIL (whole nanoFIL) to
        `address`; its balance after, in attoFIL."""
        nano, rest = divmod(int(atto), ATTO_PER_NANO)
        if rest:
            raise fail(f"this devnet counts whole nanoFIL: {atto} attoFIL is not")
        try:
            return str(await self._writer().fund(self._account(address), nano, "the Lotus API") * ATTO_PER_NANO)
        except MessageError as e:
            raise fail(str(e)) from None


def _id_text(address: str) -> str:
    """An address as a Lotus node on a test network shows it (t0100)."""
    try:
        return Address.parse(address).text(NETWORK)
    except AddressError:
        return address
