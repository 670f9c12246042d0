"""A chain node as a worker sees it when it checks fetched sector data: it answers the
precommit and sector queries from `precommits` / `sectors` (none: not precommitted yet,
so there is nothing to check against)."""
from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer, Request
from zqnode.nodes.wire import chain as CW


class ChainStandIn:
    def __init__(self, bus: str, name: str = "chain"):
        self.precommits: dict[tuple[int, int], object] = {}      # (miner, number) -> PreCommitOnChain
        self.sectors: dict[tuple[int, int], object] = {}         # (miner, number) -> SectorView
        self.asked: list[tuple[int, int]] = []
        self.peer = Peer(name=name, role="chain", cfg=BusConfig(address=bus))
        self.peer.on(CW.ChainGetPreCommit, self._precommit)
        self.peer.on(CW.ChainGetSector, self._sector)

    async def start(self, nursery) -> "ChainStandIn":
        await nursery.start(self.peer.run)
        return self

    async def _precommit(self, req: Request) -> CW.ChainPreCommit:
        key = (req.body.miner, req.body.sector)
        self.asked.append(key)
        return CW.ChainPreCommit(precommit=self.precommits.get(key))

    async def _sector(self, req: Request) -> CW.ChainSector:
        return CW.ChainSector(sector=self.sectors.get((req.body.miner, req.body.sector)))
