"""Shared by the worker tests: the manager, the scheduler and the chain as a worker sees them."""
import pytest

from zqnode.bus.codec import ErrorCode
from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer, Refused, Request
from zqnode.nodes.wire.manager import CALL_REFUSED, CallReturn, CallStarted, MgrAck, ReturnAck
from zqnode.nodes.wire.scheduler import SchedAck, SchedTaskDone, SchedTaskPrepared, SchedWorkerBeat
from tests.chain_stand_in import ChainStandIn


class Fakes:
    """The manager and the scheduler, as a worker sees them."""

    def __init__(self, bus):
        self.manager = Peer(name="mgr", role="manager", cfg=BusConfig(address=bus))
        self.scheduler = Peer(name="sched", role="scheduler", cfg=BusConfig(address=bus))
        self.chain = ChainStandIn(bus)
        self.started: list[tuple[str, str, str]] = []     # (work, call, worker)
        self.returns: list[tuple[str, str, bool, bytes, str]] = []
        self.done: list[tuple[str, bool]] = []
        self.prepared: list[str] = []
        self.beats: list[SchedWorkerBeat] = []
        self.refuse: dict[str, str] = {}                  # work id -> why CallStarted is refused
        self.ack_returns = True
        self.manager.on(CallStarted, self._started)
        self.manager.on(CallReturn, self._return)
        self.scheduler.on(SchedTaskDone, self._done)
        self.scheduler.on(SchedTaskPrepared, self._prepared)
        self.scheduler.on(SchedWorkerBeat, self._beat)

    async def start(self, nursery):
        await nursery.start(self.manager.run)
        await nursery.start(self.scheduler.run)
        await self.chain.start(nursery)
        return self

    async def _started(self, req: Request):
        self.started.append((req.body.work_id, req.body.call_id, req.sender))
        if req.body.work_id in self.refuse:
            raise Refused(CALL_REFUSED, self.refuse[req.body.work_id])
        return MgrAck()

    async def _return(self, req: Request):
        if not self.ack_returns:
            raise Refused(ErrorCode.BUSY, "not now", retry=True)
        b = req.body
        self.returns.append((b.work_id, b.call_id, b.ok, bytes(req.buffers[0]) if req.buffers else b"",
                             b.error))
        return ReturnAck(outcome="stored")

    async def _done(self, req: Request):
        self.done.append((req.body.request, req.body.ok))
        return SchedAck()

    async def _prepared(self, req: Request):
        self.prepared.append(req.body.request)
        return SchedAck()

    async def _beat(self, req: Request):
        self.beats.append(req.body)
        return SchedAck()


@pytest.fixture(name="Fakes")
def fakes_class():
    return Fakes
