"""A whole cluster in memory under a mock clock (manager, scheduler, two workers with the
fake task table run inline): requesters in process and over the bus, results kept
across manager restarts, aborts, scheduler restarts, and the jobs listing."""
import functools
import itertools

import pytest
import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.manager import tracker as T
from zqnode.nodes.manager.api import BusRequester, run_task
from zqnode.nodes.manager.errors import WorkAborted, WorkFailed
from zqnode.nodes.manager.node import ManagerNode
from zqnode.nodes.manager.pipeline import seal_sector
from zqnode.nodes.manager.store import ManagerStore
from zqnode.nodes.wire.manager import MgrJobs
from zqnode.nodes.wire.sectors import SectorRef, WorkerResources
from zqnode.nodes.scheduler.node import SchedulerNode
from zqnode.nodes.sqlite_store import StoreDamaged
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import InlineExecutor
from zqnode.nodes.worker.node import WorkerNode
from tests.chain_stand_in import ChainStandIn

_names = itertools.count()
TABLE = "tests.nodes.worker.fake_tasks"
K2 = 2048
S1 = SectorRef(miner=1000, number=1)
AP = P.APParams(seal_proof=5, piece=b"piece" * 40)


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://mgr-{next(_names)}")).run)


async def _scoped(run, *, task_status=trio.TASK_STATUS_IGNORED):
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(run)
            task_status.started(scope)


async def start(nursery, node):
    """Run a node; returns a cancel scope that stops it (a restart's first half)."""
    return await nursery.start(functools.partial(_scoped, node.run))


def me(bus, tmp_path, name) -> NodeIdentity:
    return NodeIdentity(name=name, repo=str(tmp_path / name), bus=BusConfig(address=bus))


def manager(bus, tmp_path) -> ManagerNode:
    return ManagerNode(me(bus, tmp_path, "mgr"), ManagerConfig(), SealingConfig())


def worker(bus, tmp_path, name, gates=None) -> WorkerNode:
    return WorkerNode(me(bus, tmp_path, name), WorkerConfig(table=TABLE),
                      executor=InlineExecutor(TABLE, gates),
                      resources_fn=lambda: WorkerResources(cpus=8, mem_physical=16 << 30))


async def cluster(nursery, bus, tmp_path, gates=None):
    m = manager(bus, tmp_path)
    stop_m = await start(nursery, m)
    s = SchedulerNode(me(bus, tmp_path, "sched"), SchedulerConfig())
    stop_s = await start(nursery, s)
    workers = [worker(bus, tmp_path, f"w{i}", gates) for i in (1, 2)]
    for w in workers:
        await start(nursery, w)
    await ChainStandIn(bus).start(nursery)              # workers check fetched data with it
    return m, s, workers, stop_m, stop_s


def runs(workers) -> list[str]:
    return [wid for w in workers for wid in w.executor.finished]


async def test_a_sector_through_the_pipeline_in_process(bus, nursery, tmp_path, autojump_clock):
    m, s, workers, *_ = await cluster(nursery, bus, tmp_path)
    out = await seal_sector(m, 1000, 1, "StackedDrg2KiBV1_1")
    assert (out["miner"], out["sector"], out["seal_proof"], out["sector_size"]) == (1000, 1, 5, K2)
    assert len(runs(workers)) == 4 and len(set(runs(workers))) == 4    # each stage ran once
    assert m.jobs() == []                                               # all consumed
    assert m.store.load() == ([], {(1000, 1): m.tracker.locations[(1000, 1)]})


async def test_the_same_work_asked_twice_runs_once(bus, nursery, tmp_path, autojump_clock):
    m, s, workers, *_ = await cluster(nursery, bus, tmp_path)
    a = await m.do("AP", AP, S1, K2)
    b = await m.do("AP", P.encode(AP), S1, K2)
    assert a == b
    assert await m.wait(a) == await m.wait(b)
    await m.consume(a)
    assert runs(workers) == [a]
    with pytest.raises(T.UnknownWork):
        await m.wait(a)


async def test_a_result_survives_a_manager_restart_and_is_not_recomputed(
        bus, nursery, tmp_path, autojump_clock):
    m, s, workers, stop_m, _ = await cluster(nursery, bus, tmp_path)
    wid = await m.do("AP", AP, S1, K2)
    blob = await m.wait(wid)
    stop_m.cancel()                                       # restart before consumption
    await trio.sleep(5.0)
    m2 = manager(bus, tmp_path)
    await start(nursery, m2)
    assert await m2.do("AP", AP, S1, K2) == wid             # the requester asks again
    assert await m2.wait(wid, timeout=0.001) == blob        # stored: at once
    await m2.consume(wid)
    assert runs(workers) == [wid]


async def test_returns_made_while_the_manager_is_down_arrive_after(bus, nursery, tmp_path, autojump_clock):
    gate = trio.Event()
    m, s, workers, stop_m, _ = await cluster(nursery, bus, tmp_path, gates={"AP": gate})
    wid = await m.do("AP", AP, S1, K2)
    while m.tracker.works[wid].state != "running":
        await trio.sleep(0.1)
    stop_m.cancel()
    gate.set()                                             # it finishes while the manager is away
    await trio.sleep(10.0)
    assert not any(c.returned for w in workers for c in w.store.calls())
    m2 = manager(bus, tmp_path)
    m2.open()
    assert m2.tracker.works[wid].state == "running"      # as stored before it went down
    await start(nursery, m2)
    with trio.fail_after(30):
        blob = await m2.wait(wid)
    assert P.decode_result("AP", blob).payload_size == len(AP.piece)
    assert runs(workers) == [wid]


async def test_a_failure_reaches_the_waiter(bus, nursery, tmp_path, autojump_clock):
    m, *_ = await cluster(nursery, bus, tmp_path)
    wid = await m.do("AP", P.APParams(seal_proof=5, piece=b"fail-please" * 10), S1, K2)
    with pytest.raises(WorkFailed, match="fake AP: asked to fail"):
        await m.wait(wid)
    await m.consume(wid)


async def test_abort_queued_and_running_work(bus, nursery, tmp_path, autojump_clock):
    gate = trio.Event()
    m, s, workers, *_ = await cluster(nursery, bus, tmp_path, gates={"AP": gate})
    running = await m.do("AP", AP, S1, K2)
    while m.tracker.works[running].state != "running":
        await trio.sleep(0.1)
    assert await m.abort(running[:10]) == running
    with pytest.raises(WorkAborted):
        await m.wait(running)
    # the worker's call ends as aborted, the scheduler frees it
    with trio.fail_after(30):
        while s.core.requests or any(w.store.pending() for w in workers):
            await trio.sleep(0.1)
    assert runs(workers) == []
    with pytest.raises(T.InvalidTransition):
        await m.abort(running)
    await m.consume(running)
    # queued: no worker takes PC2 (no PC1 done): abort it before it runs... on a worker
    # without the task type, it just waits in the queue
    for w in workers:
        w.tasks = ["AP"]
    await trio.sleep(2.0)
    queued = await m.do("PC2", P.PC2Params(), S1, K2)
    await trio.sleep(2.0)
    assert m.tracker.works[queued].state == "queued" and queued in s.core.requests
    await m.abort(queued)
    await trio.sleep(1.0)
    assert queued not in s.core.requests
    with pytest.raises(WorkAborted):
        await m.wait(queued)


async def test_a_restarted_scheduler_gets_the_work_again_and_nothing_runs_twice(
        bus, nursery, tmp_path, autojump_clock):
    gate = trio.Event()
    m, s, workers, _, stop_s = await cluster(nursery, bus, tmp_path, gates={"PC1": gate})
    running = await m.do("AP", AP, S1, K2)
    await m.wait(running)
    await m.consume(running)
    pc1 = await m.do("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32), S1, K2)
    while m.tracker.works[pc1].state != "running":
        await trio.sleep(0.1)
    stop_s.cancel()
    await trio.sleep(3.0)
    queued = await m.do("AP", P.APParams(seal_proof=5, piece=b"other" * 40),
                        SectorRef(miner=1000, number=2), K2)
    s2 = SchedulerNode(me(bus, tmp_path, "sched"), SchedulerConfig())
    await start(nursery, s2)
    gate.set()
    with trio.fail_after(60):
        await m.wait(pc1)
        await m.wait(queued)
    assert sorted(runs(workers)) == sorted([running, pc1, queued])


async def test_requesters_over_the_bus(bus, nursery, tmp_path, autojump_clock):
    m, s, workers, *_ = await cluster(nursery, bus, tmp_path)
    peer = Peer(name="operator", role="client", cfg=BusConfig(address=bus), register=False)
    await nursery.start(peer.run)                         # no keys: a client is admin
    req = BusRequester(peer, patience_s=30.0)
    out = await run_task(req, "AP", AP, S1, K2)
    assert out.payload_size == len(AP.piece)
    with pytest.raises(T.UnknownWork):
        await req.wait("nope")
    with pytest.raises(T.TrackerError, match="must be PC1Params"):
        await req.do("PC1", AP, S1, K2)
    wid = await req.do("AP", P.APParams(seal_proof=5, piece=b"fail" * 30), S1, K2)
    with pytest.raises(WorkFailed, match="asked to fail"):
        await req.wait(wid)
    await req.consume(wid)
    await req.consume(wid)                                # an answer lost: consuming again is fine


async def test_a_poster_may_request_only_windowpost_work(bus, nursery, tmp_path, autojump_clock):
    m, *_ = await cluster(nursery, bus, tmp_path)
    poster = Peer(name="poster", role="poster", cfg=BusConfig(address=bus))
    await nursery.start(poster.run)
    ap = await m.do("AP", AP, S1, K2)                     # the sealing machine's work
    req = BusRequester(poster, patience_s=30.0)
    for attempt in (req.do("AP", AP, S1, K2), req.wait(ap), req.consume(ap)):
        with pytest.raises(RemoteError) as e:
            await attempt
        assert e.value.code == ErrorCode.PERMISSION and "a poster may not request AP work" in e.value.message
    assert ap in m.tracker.works


async def test_jobs_list_where_work_is(bus, nursery, tmp_path, autojump_clock):
    gate = trio.Event()
    m, s, workers, *_ = await cluster(nursery, bus, tmp_path, gates={"AP": gate})
    a = await m.do("AP", AP, S1, K2)
    while m.tracker.works[a].state != "running":
        await trio.sleep(0.1)
    for w in workers:
        w.tasks = ["AP"]
    await trio.sleep(2.0)                                  # the scheduler hears of it
    b = await m.do("PC2", P.PC2Params(), SectorRef(miner=1000, number=5), K2)
    peer = Peer(name="cli", role="cli", cfg=BusConfig(address=bus))
    await nursery.start(peer.run)
    await trio.sleep(2.0)
    jobs = {j.work_id: j for j in (await peer.call("@manager", MgrJobs())).jobs}
    assert (jobs[a].status, jobs[a].task, jobs[a].worker) == ("running", "AP", m.tracker.works[a].worker)
    assert (jobs[b].status, jobs[b].worker) == ("queued", "")
    gate.set()
    await m.wait(a)
    jobs = {j.work_id: j for j in (await peer.call("@manager", MgrJobs())).jobs}
    assert jobs[a].status == "returned"


async def test_the_store_keeps_what_was_acknowledged(bus, nursery, tmp_path, autojump_clock):
    m, *_ = await cluster(nursery, bus, tmp_path)
    wid = await m.do("AP", AP, S1, K2)
    blob = await m.wait(wid)
    store = ManagerStore(tmp_path / "mgr" / "manager.sqlite")     # a second reader
    works, locations = store.load()
    store.close()
    assert [(w.work_id, w.state, w.result) for w in works] == [(wid, "done", blob)]
    assert locations == {(1000, 1): m.tracker.works[wid].worker}


async def test_work_follows_the_files_or_fetches_them(bus, nursery, tmp_path, autojump_clock):
    m, s, (w1, w2), *_ = await cluster(nursery, bus, tmp_path)
    w1.tasks, w2.tasks = ["AP", "PC1", "C1"], ["PC2"]
    await trio.sleep(2.0)
    out = await seal_sector(m, 1000, 1, "StackedDrg2KiBV1_1")
    # PC2 ran on w2 (fetched in its preparing step), C1 back on w1 (fetched when run:
    # the scheduler starts C1 without a preparing step)
    assert [c.task for c in w1.store.calls()] == ["AP", "PC1", "C1"]
    assert [c.task for c in w2.store.calls()] == ["PC2"]
    assert all(c.ok for c in w1.store.calls() + w2.store.calls())
    stages = (tmp_path / "w1" / "sectors" / "s-1000-1" / "fake.json").read_text()
    assert stages == '["AP", "PC1", "PC2", "C1"]'
    assert m.tracker.locations == {(1000, 1): "w2"} and out["sector"] == 1


async def test_get_moves_a_sector_to_another_worker(bus, nursery, tmp_path, autojump_clock):
    m, s, (w1, w2), *_ = await cluster(nursery, bus, tmp_path)
    w1.tasks, w2.tasks = ["AP"], ["GET"]
    await trio.sleep(2.0)
    await run_task(m, "AP", AP, S1, K2)
    assert m.tracker.locations == {(1000, 1): "w1"}
    got = await run_task(m, "GET", P.GETParams(), S1, K2)
    assert sorted(got.files) == ["fake.json", "unsealed"] and got.size > len(AP.piece)
    assert m.tracker.locations == {(1000, 1): "w2"}
    assert (tmp_path / "w2" / "sectors" / "s-1000-1" / "unsealed").read_bytes() == AP.piece


async def test_roles_may_only_do_what_their_role_allows(bus, nursery, tmp_path, autojump_clock):
    """A worker key returns results but may not abort jobs or change sectors; a reader may
    look; an operator (admin) may act. The hub stamps the role; the manager checks it."""
    from zqnode.bus.codec import RemoteError
    from zqnode.nodes.wire.manager import MgrAbort
    from zqnode.nodes.wire.sealing import SealingList, SealingPledge
    m, *_ = await cluster(nursery, bus, tmp_path)

    async def as_role(role):
        peer = Peer(name=f"as-{role}", role=role, cfg=BusConfig(address=bus))
        await nursery.start(peer.run)
        return peer

    async def answer(peer, msg) -> str:
        """'ok', or the error code the manager answered with."""
        try:
            await peer.call("@manager", msg)
            return "ok"
        except RemoteError as e:
            return e.code

    worker, reader, admin = [await as_role(r) for r in ("worker", "reader", "admin")]
    abort = MgrAbort(job="0" * 8)                  # no such job: past the check, it is refused
    assert await answer(worker, abort) == "permission"
    assert await answer(reader, abort) == "permission"
    assert await answer(admin, abort) not in ("ok", "permission")
    assert await answer(reader, MgrJobs()) == "ok"
    # the sector state machine's RPCs (it waits for a chain here, so past the check: not_ready)
    assert await answer(worker, SealingPledge(count=1)) == "permission"
    assert await answer(reader, SealingPledge(count=1)) == "permission"
    assert await answer(reader, SealingList()) != "permission"
    assert await answer(admin, SealingPledge(count=1)) != "permission"


@pytest.mark.parametrize("row", [b"\x91" * 5000 + b"\xc0", b"\xdd\xff\xff\xff\xff", b"junk"])
def test_a_damaged_row_stops_the_load_naming_the_file(tmp_path, row):
    store = ManagerStore(tmp_path / "manager.sqlite")
    store.db.execute("INSERT INTO works VALUES ('w', 'queued', ?)", (row,))
    with pytest.raises(StoreDamaged, match=r"manager.sqlite: a work does not decode .* damaged"):
        store.load()
