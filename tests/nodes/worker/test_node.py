"""The worker's shell over the in-memory bus under a mock clock, with the fake task table
run inline and the test playing manager and scheduler: calls and their reports, replay
after a restart, refusals, limits and shared locks, aborts, task enable/disable."""
import itertools
import sqlite3

import pytest
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain.miner import SectorView
from zqnode.nodes.config import NodeConfig
from zqnode.nodes.observe import catalog as K
from zqnode.nodes.wire.sectors import SectorRef, WorkerResources
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import InlineExecutor
from zqnode.nodes.worker.node import WorkerNode
from zqnode.nodes.wire.worker import (WorkerAbort, WorkerAccepted, WorkerListCalls, WorkerPrepare,
                                      WorkerRun, WorkerSetTask)
from zqnode.proofs import cid

_names = itertools.count()
GiB = 1 << 30
K2 = 2048
TABLE = "tests.nodes.worker.fake_tasks"


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://worker-{next(_names)}")).run)


@pytest.fixture
async def fakes(bus, nursery, Fakes):
    return await Fakes(bus).start(nursery)


def worker_cfg(bus, repo, name="w1", **kw) -> NodeConfig:
    return NodeConfig(role="worker", name=name, repo=str(repo / name), bus=BusConfig(address=bus),
                      worker=WorkerConfig(table=TABLE, **kw))


def make_worker(bus, repo, name="w1", gates=None, **kw) -> WorkerNode:
    cfg = worker_cfg(bus, repo, name, **kw)
    return WorkerNode(cfg.identity, cfg.worker, executor=InlineExecutor(TABLE, gates),
                      resources_fn=lambda: WorkerResources(cpus=4, mem_physical=8 * GiB))


def run_msg(rid, task, number=1, params=None, sources=()):
    return WorkerRun(request=rid, task=task, sector=SectorRef(miner=1000, number=number), sector_size=K2,
                     params=P.encode(params), sources=list(sources))


AP = P.APParams(seal_proof=5, piece=b"piece-bytes" * 10)
PC1 = P.PC1Params(seal_proof=5, ticket=b"t" * 32)


async def until(pred, timeout=60.0):
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.05)


async def test_a_call_runs_once_and_is_reported_to_both(bus, fakes, nursery, tmp_path, autojump_clock):
    w = make_worker(bus, tmp_path)
    await nursery.start(w.run)
    accepted = await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))
    assert isinstance(accepted, WorkerAccepted) and accepted.call_id.startswith("s-1000-1-")
    # the same work asked again while unfinished: the same call
    assert await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP)) == accepted
    await until(lambda: fakes.returns and fakes.done)
    cid = accepted.call_id
    assert fakes.started == [("work-ap", cid, "w1")]
    (work, call, ok, blob, err), = fakes.returns
    assert (work, call, ok, err) == ("work-ap", cid, True, "")
    assert P.decode_result("AP", blob).payload_size == len(AP.piece)
    assert fakes.done == [("work-ap", True)] and w.executor.runs == ["work-ap"]
    await until(lambda: w.store.get(cid).sched_done)
    calls = (await fakes.scheduler.call("w1", WorkerListCalls())).calls
    assert [(c.call_id, c.state, c.runs, c.ok, c.returned, c.sched_done) for c in calls] == [
        (cid, "done", 1, True, True, True)]
    assert (tmp_path / "w1" / "sectors" / "s-1000-1" / "unsealed").read_bytes() == AP.piece


async def test_beats_carry_fresh_info_and_what_runs(bus, fakes, nursery, tmp_path, autojump_clock):
    gate = trio.Event()
    w = make_worker(bus, tmp_path, gates={"AP": gate}, limits={"PC1": 2})
    await nursery.start(w.run)
    await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))
    await until(lambda: w.executor.runs)
    n = len(fakes.beats)
    await until(lambda: len(fakes.beats) > n)
    beat = fakes.beats[-1]
    assert beat.session == w.peer.session
    assert beat.info.tasks == ("AP", "C1", "FIN", "GET", "PC1", "PC2", "UNS", "WDP")
    assert beat.info.resource_env == {"PC1_MAX_CONCURRENT": "2"}
    assert [p.id for p in beat.info.paths] == ["w1"]
    assert [(r.request, r.task) for r in beat.running] == [("work-ap", "AP")]
    gate.set()
    await until(lambda: w.store.calls()[0].sched_done)
    n = len(fakes.beats)
    await until(lambda: len(fakes.beats) > n)
    assert fakes.beats[-1].running == []


async def test_a_stored_result_is_replayed_after_a_restart_not_recomputed(
        bus, fakes, nursery, tmp_path, autojump_clock):
    fakes.ack_returns = False                              # the manager is not taking returns
    async with trio.open_nursery() as first_life:
        w = make_worker(bus, tmp_path)
        await first_life.start(w.run)
        cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
        await until(lambda: w.store.get(cid).state == "done")
        await trio.sleep(3.0)                              # returns tried and refused meanwhile
        assert w.executor.runs == ["work-ap"] and fakes.returns == []
        first_life.cancel_scope.cancel()                   # the worker dies
    fakes.ack_returns = True
    w2 = make_worker(bus, tmp_path)
    await nursery.start(w2.run)
    await until(lambda: fakes.returns)
    assert fakes.returns[0][:3] == ("work-ap", cid, True)
    assert w2.executor.runs == []                          # replayed from the store
    assert len(fakes.started) == 1


def wasted(task, why):
    return K.WORKER_WASTED.labels("w1", task, why).value


async def test_a_running_call_runs_again_after_a_restart_under_the_same_call_id(
        bus, fakes, nursery, tmp_path, autojump_clock):
    reruns, crashed = K.WORKER_RERUNS.labels("w1", "AP").value, wasted("AP", "crashed")
    async with trio.open_nursery() as first_life:
        w = make_worker(bus, tmp_path, gates={"AP": trio.Event()})   # never finishes
        await first_life.start(w.run)
        cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
        await until(lambda: w.executor.runs)
        assert w.store.get(cid).state == "running"
        started = w.store.get(cid).updated
        await trio.sleep(2.0)                              # beats while it runs
        first_life.cancel_scope.cancel()
    w2 = make_worker(bus, tmp_path)
    await nursery.start(w2.run)
    await until(lambda: fakes.returns)
    assert fakes.returns[0][:3] == ("work-ap", cid, True) and w2.executor.runs == ["work-ap"]
    assert w2.store.get(cid).runs == 2
    # the lost run is counted: from its start to the dead worker's last beat
    assert w2.last_beat > started and K.WORKER_RERUNS.labels("w1", "AP").value == reruns + 1
    assert wasted("AP", "crashed") - crashed == pytest.approx(w2.last_beat - started)


async def test_a_call_the_manager_refuses_never_runs(bus, fakes, nursery, tmp_path, autojump_clock):
    fakes.refuse["work-ap"] = "refuse: work is done"
    w = make_worker(bus, tmp_path)
    await nursery.start(w.run)
    cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
    await until(lambda: fakes.done)
    assert w.executor.runs == [] and fakes.returns == [] and fakes.done == [("work-ap", False)]
    call = w.store.get(cid)
    assert (call.state, call.error) == ("dropped", "refuse: work is done")


async def test_a_failing_task_is_returned_as_failed(bus, fakes, nursery, tmp_path, autojump_clock):
    w = make_worker(bus, tmp_path)
    await nursery.start(w.run)
    await fakes.scheduler.call("w1", run_msg("work-pc1", "PC1", params=PC1))   # no AP before it
    await until(lambda: fakes.returns)
    work, _, ok, blob, error = fakes.returns[0]
    assert (work, ok, blob) == ("work-pc1", False, b"")
    assert error == "ValueError: fake PC1 of sector 1: no AP here (have [])"
    assert fakes.done == [("work-pc1", False)]


async def test_limits_and_shared_locks(bus, fakes, nursery, tmp_path, autojump_clock):
    gates = {t: trio.Event() for t in ("PC1", "PC2", "C1")}
    w = make_worker(bus, tmp_path, gates=gates, limits={"PC1": 1}, locks={"gpu": ["PC2", "C1"]})
    await nursery.start(w.run)
    for rid, task, n, params in [("p1", "PC1", 1, PC1), ("p2", "PC1", 2, PC1),
                                 ("pc2", "PC2", 3, P.PC2Params()),
                                 ("c1", "C1", 4, P.C1Params(seed=b"s" * 32))]:
        await fakes.scheduler.call("w1", run_msg(rid, task, n, params))
    await until(lambda: len(fakes.started) == 4)
    await trio.sleep(1.0)
    assert w.executor.runs == ["p1", "pc2"]                # p2 waits for PC1's slot, c1 for the lock
    assert w.limits.holders == {"gpu": {next(c.call_id for c in w.store.calls() if c.work_id == "pc2")}}
    gates["PC1"].set()
    await until(lambda: "p2" in w.executor.runs)
    assert "c1" not in w.executor.runs
    gates["PC2"].set()
    await until(lambda: "c1" in w.executor.runs)
    gates["C1"].set()
    await until(lambda: len(fakes.done) == 4)


async def test_abort_stops_a_running_call(bus, fakes, nursery, tmp_path, autojump_clock):
    aborted = wasted("AP", "aborted")
    w = make_worker(bus, tmp_path, gates={"AP": trio.Event()})
    await nursery.start(w.run)
    cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
    await until(lambda: w.executor.runs)
    assert (await fakes.scheduler.call("w1", WorkerAbort(request="work-ap"))).found
    await until(lambda: fakes.returns and fakes.done)
    assert fakes.returns[0][1:] == (cid, False, b"", "aborted")
    assert fakes.done == [("work-ap", False)] and w.executor.finished == []
    assert not (await fakes.scheduler.call("w1", WorkerAbort(request="work-ap"))).found
    assert wasted("AP", "aborted") > aborted             # the aborted run's time is counted


async def test_prepare_fetches_from_the_holder_and_reports(bus, fakes, nursery, tmp_path, autojump_clock):
    w1, w2 = make_worker(bus, tmp_path, "w1"), make_worker(bus, tmp_path, "w2", fetch_chunk=1024)
    await nursery.start(w1.run)
    await nursery.start(w2.run)
    big = P.APParams(seal_proof=5, piece=b"x" * 3000)
    await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=big))
    await until(lambda: fakes.returns)
    await fakes.scheduler.call("w2", WorkerPrepare(request="work-pc1", task="PC1",
                                                   sector=SectorRef(miner=1000, number=1),
                                                   sector_size=K2, params=P.encode(PC1), sources=["w1"]))
    await until(lambda: fakes.prepared)
    assert fakes.prepared == ["work-pc1"]
    copied = tmp_path / "w2" / "sectors" / "s-1000-1"
    assert (copied / "unsealed").read_bytes() == b"x" * 3000
    assert sorted(p.name for p in copied.iterdir()) == ["fake.json", "unsealed"]
    await fakes.scheduler.call("w2", run_msg("work-pc1", "PC1", params=PC1, sources=["w1"]))
    await until(lambda: len(fakes.returns) == 2)
    assert fakes.returns[1][2] is True                     # PC1 found AP's files at w2


async def test_a_failed_fetch_fails_the_work(bus, fakes, nursery, tmp_path, autojump_clock):
    w2 = make_worker(bus, tmp_path, "w2")
    await nursery.start(w2.run)
    await fakes.scheduler.call("w2", WorkerPrepare(request="work-pc1", task="PC1",
                                                   sector=SectorRef(miner=1000, number=1),
                                                   sector_size=K2, params=P.encode(PC1), sources=["w9"]))
    await until(lambda: fakes.returns and fakes.done)
    work, _, ok, _, error = fakes.returns[0]
    assert (work, ok) == ("work-pc1", False) and error.startswith("fetch failed: cannot fetch s-1000-1")
    assert fakes.done == [("work-pc1", False)] and fakes.prepared == []


async def test_fetched_unsealed_data_of_a_proven_sector_is_checked_against_the_chains_comm_d(
        bus, fakes, nursery, tmp_path, autojump_clock):
    w1, w2 = make_worker(bus, tmp_path, "w1"), make_worker(bus, tmp_path, "w2")
    await nursery.start(w1.run)
    await nursery.start(w2.run)
    await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))
    await until(lambda: fakes.returns)
    fakes.chain.sectors[(1000, 1)] = SectorView(     # proven: the precommit is gone
        number=1, state="active", seal_proof=5, sealed_cid=cid.sealed_cid(b"\x01" * 32),
        unsealed_cid=cid.piece_cid_v1(b"\x02" * 32), activation=1, deadline=0, partition=0)
    await fakes.scheduler.call("w2", WorkerPrepare(request="work-uns", task="PC1",
                                                   sector=SectorRef(miner=1000, number=1),
                                                   sector_size=K2, params=P.encode(PC1), sources=["w1"]))
    await until(lambda: len(fakes.returns) == 2)
    work, _, ok, _, error = fakes.returns[1]
    assert (work, ok) == ("work-uns", False) and "is not the sector's" in error, error
    assert not (tmp_path / "w2" / "sectors" / "s-1000-1" / "unsealed").exists()


async def test_a_chain_sector_that_does_not_read_fails_the_fetch_not_the_worker(
        bus, fakes, nursery, tmp_path, autojump_clock):
    """A chain that answers a sealed CID that is no CID (a hostile or broken chain role):
    the work fails with the reason, the worker goes on. A sector without an unsealed CID
    (a Lotus node keeps no CommD for a proven sector) is checked against its comm_r only."""
    w1, w2 = make_worker(bus, tmp_path, "w1"), make_worker(bus, tmp_path, "w2")
    await nursery.start(w1.run)
    await nursery.start(w2.run)
    await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))
    await until(lambda: fakes.returns)
    fakes.chain.sectors[(1000, 1)] = SectorView(
        number=1, state="active", seal_proof=5, sealed_cid="bafk-not-a-cid", unsealed_cid="",
        activation=1, deadline=0, partition=0)
    await fakes.scheduler.call("w2", WorkerPrepare(request="work-bad", task="PC1",
                                                   sector=SectorRef(miner=1000, number=1),
                                                   sector_size=K2, params=P.encode(PC1), sources=["w1"]))
    await until(lambda: len(fakes.returns) == 2)
    work, _, ok, _, error = fakes.returns[1]
    assert (work, ok) == ("work-bad", False) and "does not read" in error, error
    fakes.chain.sectors[(1000, 1)] = SectorView(
        number=1, state="active", seal_proof=5, sealed_cid=cid.sealed_cid(b"\x01" * 32), unsealed_cid="",
        activation=1, deadline=0, partition=0)
    await fakes.scheduler.call("w2", WorkerPrepare(request="work-lotus", task="PC1",
                                                   sector=SectorRef(miner=1000, number=1),
                                                   sector_size=K2, params=P.encode(PC1), sources=["w1"]))
    await until(lambda: fakes.prepared)
    assert fakes.prepared == ["work-lotus"] and len(fakes.returns) == 2


async def test_tasks_enable_and_disable(bus, fakes, nursery, tmp_path, autojump_clock):
    from zqnode.bus.codec import RemoteError
    w = make_worker(bus, tmp_path, tasks=["AP", "PC1"])
    await nursery.start(w.run)
    with pytest.raises(RemoteError) as refused:          # an operator's command, not a node's
        await fakes.scheduler.call("w1", WorkerSetTask(task="PC1", enabled=False))
    assert refused.value.code == "permission"
    operator = Peer(name="operator", role="admin", cfg=BusConfig(address=bus))
    await nursery.start(operator.run)
    got = await operator.call("w1", WorkerSetTask(task="PC1", enabled=False))
    assert got.tasks == ["AP"]
    await until(lambda: fakes.beats and fakes.beats[-1].info.tasks == ("AP",))
    assert (await operator.call("w1", WorkerSetTask(task="PC2", enabled=True))).tasks == ["AP", "PC2"]
    with pytest.raises(RemoteError, match="no task type 'C2'"):
        await operator.call("w1", WorkerSetTask(task="C2", enabled=True))
    again = make_worker(bus, tmp_path, tasks=["AP", "PC1"])
    again.open()
    assert again.tasks == ["AP", "PC2"]                    # kept across restarts
    again.store.close()


def test_a_worker_config_naming_tasks_its_table_lacks_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"worker tasks \['C2'\] are not in the table"):
        make_worker("mem://x", tmp_path, tasks=["C2"])
    with pytest.raises(ValueError, match="unknown task types"):
        WorkerConfig(tasks=["XX"])


async def test_a_full_disk_pauses_calls_and_says_so_but_the_worker_lives(
        bus, fakes, nursery, tmp_path, autojump_clock):
    w = make_worker(bus, tmp_path)
    await nursery.start(w.run)
    save, full = w.store.save, [3]

    def finish_on_a_full_disk(call):
        if full[0] and call.state == "done":
            full[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return save(call)
    w.store.save = finish_on_a_full_disk
    cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
    await until(lambda: full[0] == 2)
    assert w.peer.capabilities["problems"] == {
        "store": f"cannot write {w.store.path}: database or disk is full"}
    assert await fakes.scheduler.call("w1", WorkerListCalls())    # still serving
    # asked again meanwhile: its TaskDone waits behind the result it reports
    assert (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id == cid
    await trio.sleep(0.5)
    assert full[0] and fakes.returns == [] and fakes.done == []
    await until(lambda: fakes.returns and fakes.done)               # space again: it goes on
    assert fakes.returns[0][2] is True and w.peer.capabilities["problems"] == {}
    assert w.store.get(cid).state == "done"


async def test_a_full_disk_refuses_new_work_for_now(bus, fakes, nursery, tmp_path, autojump_clock):
    from zqnode.bus.codec import RemoteError
    w = make_worker(bus, tmp_path)
    await nursery.start(w.run)
    save = w.store.save

    def full(call):
        raise sqlite3.OperationalError("database or disk is full")
    w.store.save = full
    with pytest.raises(RemoteError) as busy:
        await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))
    assert busy.value.code == "busy" and "database or disk is full" in busy.value.message
    assert w.core.live_for("work-ap") is None and w.store.calls() == [] and fakes.started == []
    w.store.save = save                                              # space again: asked again
    cid = (await fakes.scheduler.call("w1", run_msg("work-ap", "AP", params=AP))).call_id
    await until(lambda: fakes.returns and fakes.done)
    assert fakes.returns[0][:3] == ("work-ap", cid, True) and w.peer.capabilities["problems"] == {}
