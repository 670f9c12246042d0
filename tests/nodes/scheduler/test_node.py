"""The scheduler's shell over the in-memory bus under a mock clock, with scripted
workers and the test as the manager: assignment, TaskDone, liveness (disable, remove),
fresh resources per beat, and rebuilding its state after restarts (adoption, parking)."""
import itertools

import pytest
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer, Request
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.scheduler import SchedulerConfig
from zqnode.nodes.wire.sectors import SectorRef, SelTask, StoragePath, WorkerInfo, WorkerResources
from zqnode.nodes.scheduler.node import LOST_AFTER_S, SchedulerNode
from zqnode.nodes.wire.scheduler import (RunningRequest, SchedAck, SchedCancel, SchedEnqueue,
                                         SchedGetDiag, SchedSync, SchedTaskDone, SchedWorkerBeat)
from zqnode.nodes.wire.worker import (WorkerAbort, WorkerAccepted, WorkerAck, WorkerPrepare,
                                      WorkerRun)

_names = itertools.count()
GiB = 1 << 30
K2 = 2048


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://sched-{next(_names)}")).run)


async def start_scheduler(nursery, bus, tmp_path, **config) -> SchedulerNode:
    me = NodeIdentity(name="sched", repo=str(tmp_path / "sched"), bus=BusConfig(address=bus))
    cfg = SchedulerConfig(**{"disable_after_s": 15.0, "remove_after_s": 60.0, **config})
    return await nursery.start(SchedulerNode(me, cfg).run)


class FakeWorker:
    """A scripted worker: records what the scheduler asks, runs nothing by itself."""

    def __init__(self, bus, name, tasks=("AP", "PC1", "PC2", "C1"), env=None, cpus=8):
        self.name, self.tasks, self.env = name, tasks, env or {}
        self.peer = Peer(name=name, role="worker", cfg=BusConfig(address=bus))
        self.session = "session-1"
        self.resources = WorkerResources(cpus=cpus, mem_physical=64 * GiB, mem_used=GiB)
        self.got: list[tuple[str, str]] = []
        self.runs: dict[str, WorkerRun] = {}
        self.running: dict[str, RunningRequest] = {}
        self.beating = True
        self.peer.on(WorkerRun, self._run)
        self.peer.on(WorkerPrepare, self._prepare)
        self.peer.on(WorkerAbort, self._abort)

    async def start(self, nursery, beat=True):
        await nursery.start(self.peer.run)
        nursery.start_soon(self._beat_loop)
        if beat:
            await self.beat()
        return self

    def info(self) -> WorkerInfo:
        return WorkerInfo(hostname=self.name, tasks=self.tasks, resources=self.resources,
                          paths=(StoragePath(id=self.name, can_seal=True, can_store=True),),
                          resource_env=self.env)

    async def beat(self) -> SchedAck:
        return await self.peer.call("@scheduler", SchedWorkerBeat(
            session=self.session, info=self.info(), running=list(self.running.values())))

    async def _beat_loop(self):
        while True:
            await trio.sleep(1.0)
            if self.beating:
                try:
                    await self.beat()
                except RemoteError:          # no scheduler now
                    pass

    async def _run(self, req: Request):
        b = req.body
        self.got.append(("run", b.request))
        self.runs[b.request] = b
        self.running[b.request] = RunningRequest(request=b.request, task=b.task, sector=b.sector,
                                                 sector_size=b.sector_size)
        return WorkerAccepted(call_id=f"call-{b.request}")

    async def _prepare(self, req: Request):
        self.got.append(("prepare", req.body.request))
        return WorkerAck()

    async def _abort(self, req: Request):
        self.got.append(("abort", req.body.request))
        return WorkerAck(found=req.body.request in self.running)

    async def done(self, rid: str, ok: bool = True) -> SchedAck:
        self.running.pop(rid, None)
        return await self.peer.call("@scheduler", SchedTaskDone(request=rid, ok=ok))


async def manager(nursery, bus) -> Peer:
    peer = Peer(name="mgr", role="manager", cfg=BusConfig(address=bus))
    await nursery.start(peer.run)
    return peer


def job(rid, task="PC1", number=1, **kw) -> SchedEnqueue:
    return SchedEnqueue(request=rid, sector=SectorRef(miner=1000, number=number), task=task,
                        sector_size=K2, params=f"params-{rid}".encode(), selector=SelTask(), **kw)


async def until(pred, timeout=120.0):
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.1)


def by_worker(s: SchedulerNode) -> dict:
    return {w.worker: w for w in s.core.diag().workers}


async def test_enqueue_assign_run_and_taskdone_frees_resources(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1").start(nursery)
    mgr = await manager(nursery, bus)
    assert await mgr.call("@scheduler", job("r1")) == SchedAck(known=False)
    await until(lambda: "r1" in w1.runs)
    run = w1.runs["r1"]
    assert (run.task, run.sector, run.sector_size, run.params) == ("PC1", SectorRef(miner=1000, number=1),
                                                                   K2, b"params-r1")
    w = by_worker(s)["w1"]
    assert w.running == (("r1", "running"),) and w.active.cpu_use == 1
    assert w.active.mem_used_min == 2048 and w.task_counts == {"PC1:2K": 1}
    assert await mgr.call("@scheduler", job("r1")) == SchedAck(known=True)    # a duplicate is fine
    assert await w1.done("r1") == SchedAck(known=True)
    w = by_worker(s)["w1"]
    assert w.running == () and w.active.cpu_use == 0 and w.active.mem_used_min == 0
    assert w.task_counts == {} and "r1" not in s.jobs
    assert await w1.done("r1") == SchedAck(known=False)                        # told twice
    assert w1.got == [("run", "r1")]


async def test_a_request_with_a_preparing_step_is_prepared_first(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1").start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1", task="PC2", prepare="GET", sources=["w9"]))
    await until(lambda: w1.got)
    assert w1.got == [("prepare", "r1")] and by_worker(s)["w1"].running == (("r1", "preparing"),)
    from zqnode.nodes.wire.scheduler import SchedTaskPrepared
    await w1.peer.call("@scheduler", SchedTaskPrepared(request="r1"))
    await until(lambda: "r1" in w1.runs)
    assert w1.runs["r1"].sources == ["w9"] and w1.got == [("prepare", "r1"), ("run", "r1")]


async def test_a_silent_worker_is_disabled_and_its_queued_requests_go_elsewhere(
        bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    # one PC1 at a time on w1: the second waits in w1's other window
    w1 = await FakeWorker(bus, "w1", tasks=("PC1",), env={"PC1_MAX_CONCURRENT": "1"}).start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1", number=1))
    await mgr.call("@scheduler", job("r2", number=2))
    await until(lambda: "r1" in w1.runs)
    w = by_worker(s)["w1"]
    assert [win.requests for win in w.windows] == [("r2",)] and w.running == (("r1", "running"),)
    w2 = await FakeWorker(bus, "w2", tasks=("PC1",), env={"PC1_MAX_CONCURRENT": "1"}).start(nursery)
    assert w2.got == []                                   # w2 idles: r2 sits in w1's window
    w1.beating = False
    await until(lambda: not by_worker(s)["w1"].enabled)
    assert 15.0 < trio.current_time() < 20.0
    await until(lambda: "r2" in w2.runs)
    w = by_worker(s)["w1"]
    assert w.windows == () and w.running == (("r1", "running"),)   # r1 may still finish there
    assert w2.got == [("run", "r2")] and w1.got == [("run", "r1")]
    w1.beating = True                                     # back: enabled again
    await until(lambda: by_worker(s)["w1"].enabled)


async def test_a_worker_silent_past_remove_after_disappears_and_its_work_is_requeued(
        bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1", tasks=("PC1",)).start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1"))
    await until(lambda: "r1" in w1.runs)
    w1.beating = False
    w2 = await FakeWorker(bus, "w2", tasks=("PC1",)).start(nursery)
    await until(lambda: "w1" not in by_worker(s))
    assert 60.0 < trio.current_time() < 65.0
    diag = (await mgr.call("@scheduler", SchedGetDiag())).diag
    assert [w.worker for w in diag.workers] == ["w2"]
    await until(lambda: "r1" in w2.runs)                   # what ran on w1 is queued again
    assert by_worker(s)["w2"].running == (("r1", "running"),)


async def test_resources_are_refreshed_on_each_beat(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1").start(nursery)
    assert by_worker(s)["w1"].resources.mem_used == GiB
    w1.resources = WorkerResources(cpus=8, mem_physical=64 * GiB, mem_used=40 * GiB, gpus=("H100",))
    await w1.beat()
    r = by_worker(s)["w1"].resources
    assert (r.mem_used, r.gpus) == (40 * GiB, ("H100",))
    session = by_worker(s)["w1"].session
    w1.tasks = ("AP",)                                     # a task disabled: same session, new offer
    await w1.beat()
    assert by_worker(s)["w1"].tasks == ("AP",) and by_worker(s)["w1"].session == session


async def test_a_restarted_worker_keeps_what_it_still_runs_and_loses_the_rest(
        bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1", tasks=("PC1",)).start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1", number=1))
    await mgr.call("@scheduler", job("r2", number=2))
    await until(lambda: {"r1", "r2"} <= set(w1.runs))
    # restarted: its call store still runs r1 (re-run), r2 never reached its store
    w1.session = "session-2"
    del w1.running["r2"]
    w1.runs.clear()
    await w1.beat()
    w = by_worker(s)["w1"]
    assert w.session == "session-2"
    await until(lambda: "r2" in w1.runs)                   # queued again, run again
    assert "r1" not in w1.runs                              # adopted, not sent again
    assert dict(by_worker(s)["w1"].running) == {"r1": "running", "r2": "running"}
    await w1.done("r1")
    assert dict(by_worker(s)["w1"].running) == {"r2": "running"}


async def test_a_restarted_scheduler_rebuilds_from_beats_and_the_manager(
        bus, nursery, tmp_path, autojump_clock):
    w1 = await FakeWorker(bus, "w1", tasks=("PC1",)).start(nursery, beat=False)
    mgr = await manager(nursery, bus)
    # the first scheduler's life: w1 runs r1; then it dies (a new one starts empty)
    w1.running["r1"] = RunningRequest(request="r1", task="PC1", sector=SectorRef(miner=1000, number=1),
                                      sector_size=K2)
    s = await start_scheduler(nursery, bus, tmp_path)
    await w1.beat()
    assert dict(by_worker(s)["w1"].running) == {}   # its word alone adopts nothing: any key may claim
    # the manager sends everything unfinished again: r1 running on w1, r3 running on w1
    # by its records (w1 lost it), r2 queued
    assert await mgr.call("@scheduler", job("r1", running_on="w1")) == SchedAck(known=False)
    await mgr.call("@scheduler", job("r3", number=3, running_on="w1"))
    await mgr.call("@scheduler", job("r2", number=2))
    assert (await mgr.call("@scheduler", SchedGetDiag())).parked == ["r1", "r3"]
    sync = await mgr.call("@scheduler", SchedSync(requests=["r1", "r2", "r3", "r4"]))
    assert sync.unknown == ["r4"]
    await until(lambda: "r2" in w1.runs)
    await w1.beat()                        # w1 lists r1: adopted; not r3: queued, run
    assert dict(by_worker(s)["w1"].running)["r1"] == "running"
    await until(lambda: "r3" in w1.runs)
    assert w1.got == [("run", "r2"), ("run", "r3")]


async def test_a_taskdone_that_overtakes_a_beat_is_not_adopted_again(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1").start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1"))
    await until(lambda: "r1" in w1.runs)
    stale = list(w1.running.values())
    await w1.done("r1")
    await w1.peer.call("@scheduler", SchedWorkerBeat(session=w1.session, info=w1.info(), running=stale))
    assert by_worker(s)["w1"].running == ()


async def test_a_lost_run_is_queued_again(bus, nursery, tmp_path, autojump_clock):
    await start_scheduler(nursery, bus, tmp_path)
    w1 = await FakeWorker(bus, "w1").start(nursery)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1"))
    await until(lambda: "r1" in w1.runs)
    del w1.running["r1"]                                  # as if the WorkerRun never arrived
    start = trio.current_time()
    await until(lambda: w1.got.count(("run", "r1")) == 2)
    assert trio.current_time() - start > LOST_AFTER_S


async def test_cancel_queued_and_running_requests(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1"))
    assert await mgr.call("@scheduler", SchedCancel(request="r1")) == SchedAck(known=True)
    assert s.core.requests == {} and s.jobs == {}
    w1 = await FakeWorker(bus, "w1").start(nursery)
    await mgr.call("@scheduler", job("r2"))
    await until(lambda: "r2" in w1.runs)
    await mgr.call("@scheduler", SchedCancel(request="r2"))
    await until(lambda: ("abort", "r2") in w1.got)
    await w1.done("r2", ok=False)
    assert s.core.requests == {} and by_worker(s)["w1"].running == ()
    assert await mgr.call("@scheduler", SchedCancel(request="r9")) == SchedAck(known=False)


async def test_a_worker_that_says_goodbye_is_removed_at_once(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    async with trio.open_nursery() as inner:
        w1 = await FakeWorker(bus, "w1", tasks=("PC1",)).start(inner)
        mgr = await manager(nursery, bus)
        await mgr.call("@scheduler", job("r1"))
        await until(lambda: "r1" in w1.runs)
        inner.cancel_scope.cancel()                        # w1 stops cleanly: Goodbye
    await until(lambda: "w1" not in by_worker(s))
    assert trio.current_time() < 5.0 and s.orphans == {}
    w2 = await FakeWorker(bus, "w2", tasks=("PC1",)).start(nursery)
    await until(lambda: "r1" in w2.runs)


async def test_bad_input_is_refused(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    mgr = await manager(nursery, bus)
    with pytest.raises(RemoteError, match="unknown task type 'XX'"):
        await mgr.call("@scheduler", job("r1", task="XX"))
    assert s.jobs == {} and s.core.requests == {}
    bad = FakeWorker(bus, "w9", tasks=("NOPE",))
    await nursery.start(bad.peer.run)
    with pytest.raises(RemoteError, match="unknown task types"):
        await bad.beat()
    assert "w9" not in by_worker(s)


# ---- the core's TaskAdopted (added for the shell) -------------------------------------

def test_core_adopts_a_running_request_and_frees_it_on_finish():
    from zqnode.nodes.scheduler import (DuplicateRequest, Scheduler, SchedulerError, TaskAdopted,
                                        TaskFinished, UnknownWorker, WorkerJoined)
    core = Scheduler()
    info = WorkerInfo(hostname="h", tasks=("PC1",), resources=WorkerResources(cpus=2, mem_physical=GiB),
                      resource_env={"PC1_MAX_CONCURRENT": "1"})
    core.handle(WorkerJoined(worker="w1", session="s", info=info, cause="join"), 0.0)
    adopt = TaskAdopted(request="r1", worker="w1", sector=SectorRef(miner=1, number=1), task="PC1",
                        sector_size=K2, cause="beat")
    assert core.handle(adopt, 1.0) == []
    w = core.diag().workers[0]
    assert w.running == (("r1", "running"),) and w.task_counts == {"PC1:2K": 1}
    assert w.active.cpu_use == 1 and w.active.mem_used_min == K2
    with pytest.raises(DuplicateRequest):
        core.handle(adopt, 1.0)
    with pytest.raises(UnknownWorker):
        core.handle(TaskAdopted(request="r2", worker="w9", sector=SectorRef(miner=1, number=2),
                                task="PC1", sector_size=K2, cause="beat"), 1.0)
    with pytest.raises(SchedulerError, match="unknown task type"):
        core.handle(TaskAdopted(request="r2", worker="w1", sector=SectorRef(miner=1, number=2),
                                task="XX", sector_size=K2, cause="beat"), 1.0)
    assert list(core.requests) == ["r1"]
    core.handle(TaskFinished(request="r1", cause="done"), 2.0)
    w = core.diag().workers[0]
    assert w.running == () and w.task_counts == {} and w.active.cpu_use == 0


async def test_a_request_reported_preparing_is_not_adopted(bus, nursery, tmp_path, autojump_clock):
    s = await start_scheduler(nursery, bus, tmp_path)
    w1 = FakeWorker(bus, "w1", tasks=("PC2",))
    w1.running["r1"] = RunningRequest(request="r1", task="PC2", sector=SectorRef(miner=1000, number=1),
                                      sector_size=K2, state="preparing")
    await w1.start(nursery)
    assert by_worker(s)["w1"].running == () and "r1" not in s.core.requests
    mgr = await manager(nursery, bus)
    await mgr.call("@scheduler", job("r1", task="PC2", prepare="GET"))   # the manager's resend
    await until(lambda: ("prepare", "r1") in w1.got)
    del w1.running["r1"]                                   # its fetch ends; it says prepared
    from zqnode.nodes.wire.scheduler import SchedTaskPrepared
    await w1.peer.call("@scheduler", SchedTaskPrepared(request="r1"))
    await until(lambda: "r1" in w1.runs)
