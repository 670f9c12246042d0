"""A miner's state read from a Lotus node (Lotus, Venus, Forest, or a zqnode devnet's API)
as zqnode's chain views: the chain-watcher answers the bus's chain API with it, and
`zqnode proving ... --lotus URL` / `zqnode chain miner --lotus URL` read a real miner with
it, no cluster needed.

`call(name, *params)` is a Lotus API call (LotusClient.call, or the watcher's). What the
node answers is counted before it is read: a deadline's bitfields together name at most
MAX_LISTED sectors, else NodeAnswerError (so is any answer that does not add up)."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from zqnode.nodes.chain.core import NotFound
from zqnode.nodes.chain.filecoin.dagcbor import CborError
from zqnode.nodes.chain.funds import ATTO_PER_NANO
from zqnode.nodes.chain.lotus import types as T
from zqnode.nodes.chain.miner import DeadlineView, MinerView, PartitionView, PreCommitOnChain, SectorView
from zqnode.nodes.chain.policy import MAINNET, POLICIES, DeadlineInfo, Policy
from zqnode.proofs import cid as cids
from zqnode.proofs.params import SEAL_PROOFS

MAX_LISTED = 1_000_000                     # sectors named by one deadline's bitfields, together


class NodeAnswerError(ValueError):
    """What the node answered does not read as a miner's state."""


def _v1_1(sector_size: int) -> int:
    proof = next((p.id for p in SEAL_PROOFS if p.sector_size == sector_size and p.name.endswith("V1_1")), None)
    if proof is None:
        raise NodeAnswerError(f"the Lotus node's miner has sectors of {sector_size} bytes, no size Filecoin has")
    return proof


def _count(runs: list[int]) -> int:
    """Members of a bitfield given as go-bitfield's JSON runs, without building it."""
    return sum(runs[1::2])


def deadline_info(d: T.DeadlineInfo) -> DeadlineInfo:
    return DeadlineInfo(current_epoch=d.CurrentEpoch, period_start=d.PeriodStart, index=d.Index,
                        open=d.Open, close=d.Close, challenge=d.Challenge, fault_cutoff=d.FaultCutoff)


class LotusReader:
    def __init__(self, call: Callable[..., Awaitable[Any]], network: str = "", seal_proof: int = 0):
        self.call, self.network, self.seal_proof = call, network, seal_proof

    @property
    def policy(self) -> Policy:
        """The network's deadlines and delays (every Filecoin network has mainnet's)."""
        return POLICIES.get(self.network, MAINNET)

    async def at(self, epoch: int | None) -> list[T.Cid]:
        """The key of the tipset at `epoch` ([]: the head)."""
        if epoch is None or epoch < 0:
            return []
        return (await self.call("ChainGetTipSetByHeight", epoch, [])).Cids

    async def miner(self, actor_id: int) -> MinerView:
        addr = f"f0{actor_id}"
        info = await self.call("StateMinerInfo", addr, [])
        dl = await self.call("StateMinerProvingDeadline", addr, [])
        count = await self.call("StateMinerSectorCount", addr, [])
        power = await self.call("StateMinerPower", addr, [])
        recovering = _count(await self.call("StateMinerRecoveries", addr, []))
        if recovering > MAX_LISTED:
            raise NodeAnswerError(f"the Lotus node says {recovering} sectors are recovering")
        if dl.WPoStProvingPeriod <= 0:
            raise NodeAnswerError(f"the Lotus node's proving period is {dl.WPoStProvingPeriod} epochs")
        state = await self.call("StateReadState", addr, [])
        available = int(await self.call("StateMinerAvailableBalance", addr, []))
        accounts = {}
        for a in (info.Worker, *info.ControlAddresses):
            accounts[a] = int(await self.call("WalletBalance", a)) // ATTO_PER_NANO
        funds = state.State
        return MinerView(
            actor_id=actor_id, address=addr, worker=info.Worker, control=list(info.ControlAddresses),
            seal_proof=self.seal_proof or _v1_1(info.SectorSize), sector_size=info.SectorSize,
            partition_sectors=info.WindowPoStPartitionSectors,
            period_offset=dl.PeriodStart % dl.WPoStProvingPeriod, power=int(power.MinerPower.RawBytePower),
            sectors=count.Live, active=count.Active, unproven=max(count.Live - count.Active - count.Faulty, 0),
            faulty=count.Faulty, recovering=recovering, precommits=0, penalties=0, detected_faults=0,
            skipped_faults=0, expired_precommits=0, counted=False, deadline=deadline_info(dl),
            balance=int(state.Balance) // ATTO_PER_NANO, available=available // ATTO_PER_NANO,
            precommit_deposits=int(funds.PreCommitDeposits) // ATTO_PER_NANO,
            initial_pledge=int(funds.InitialPledge) // ATTO_PER_NANO,
            vesting=int(funds.LockedFunds) // ATTO_PER_NANO, fee_debt=int(funds.FeeDebt) // ATTO_PER_NANO,
            accounts=accounts)

    async def deadline(self, miner: int, epoch: int | None = None) -> DeadlineInfo:
        return deadline_info(await self.call("StateMinerProvingDeadline", f"f0{miner}", await self.at(epoch)))

    async def partitions(self, miner: int, index: int) -> DeadlineView:
        addr = f"f0{miner}"
        deadlines = await self.call("StateMinerDeadlines", addr, [])
        if not 0 <= index < len(deadlines):
            raise NotFound(f"deadline {index} out of range 0..{len(deadlines) - 1}")
        parts = await self.call("StateMinerPartitions", addr, index, [])
        total = _count(deadlines[index].PostSubmissions) + sum(
            _count(x) for p in parts
            for x in (p.AllSectors, p.LiveSectors, p.ActiveSectors, p.FaultySectors, p.RecoveringSectors))
        if total > MAX_LISTED:
            raise NodeAnswerError(f"the Lotus node's deadline {index} names {total} sectors, "
                                  f"over the {MAX_LISTED} this reads")
        try:
            views = []
            for i, p in enumerate(parts):
                live, active, faulty = (set(T.bitfield_of(x).members(MAX_LISTED))
                                        for x in (p.LiveSectors, p.ActiveSectors, p.FaultySectors))
                views.append(PartitionView(
                    index=i, sectors=T.bitfield_of(p.AllSectors).members(MAX_LISTED), active=sorted(active),
                    unproven=sorted(live - active - faulty), faults=sorted(faulty),
                    recoveries=T.bitfield_of(p.RecoveringSectors).members(MAX_LISTED)))
            posted = T.bitfield_of(deadlines[index].PostSubmissions).members(MAX_LISTED)
        except (ValueError, CborError, OverflowError) as e:
            raise NodeAnswerError(f"the Lotus node's partitions do not read: {e}") from None
        return DeadlineView(index=index, partitions=views, posted=posted)

    async def sector(self, miner: int, number: int) -> SectorView | None:
        addr = f"f0{miner}"
        info = await self.call("StateSectorGetInfo", addr, number, [])
        where = await self.call("StateSectorPartition", addr, number, [])
        if info is None or where is None:
            return None
        parts = (await self.partitions(miner, where.Deadline)).partitions
        if where.Partition >= len(parts):
            raise NodeAnswerError(f"the Lotus node puts sector {number} in partition {where.Partition} of "
                                  f"deadline {where.Deadline}, which has {len(parts)}")
        part = parts[where.Partition]
        state = ("recovering" if number in part.recoveries else "faulty" if number in part.faults
                 else "unproven" if number in part.unproven else "active")
        return SectorView(
            number=info.SectorNumber, state=state, seal_proof=info.SealProof, sealed_cid=info.SealedCID.link,
            unsealed_cid="", activation=info.Activation, deadline=where.Deadline, partition=where.Partition,
            expiration=info.Expiration, sector_key_cid=info.SectorKeyCID.link if info.SectorKeyCID else "")

    async def precommit(self, miner: int, number: int) -> PreCommitOnChain | None:
        pc = await self.call("StateSectorPreCommitInfo", f"f0{miner}", number, [])
        if pc is None:
            return None
        i, p = pc.Info, self.policy
        unsealed = i.UnsealedCid.link if i.UnsealedCid else ""
        try:
            comm_d = cids.parse_piece_cid(unsealed) if unsealed else b""
            comm_r = cids.parse_sealed_cid(i.SealedCID.link)
        except cids.CidError as e:
            raise NodeAnswerError(f"the Lotus node's pre-commit does not read: {e}") from None
        return PreCommitOnChain(
            sector_number=i.SectorNumber, seal_proof=i.SealProof, sealed_cid=i.SealedCID.link,
            unsealed_cid=unsealed, comm_r=comm_r, comm_d=comm_d if isinstance(comm_d, bytes) else b"",
            seal_rand_epoch=i.SealRandEpoch, precommit_epoch=pc.PreCommitEpoch,
            seed_epoch=pc.PreCommitEpoch + p.precommit_challenge_delay,
            prove_by=pc.PreCommitEpoch + p.max_prove_commit_duration, expiration=i.Expiration,
            deposit=int(pc.PreCommitDeposit) // ATTO_PER_NANO)
