"""`zqnode sealing ...` and `zqnode worker ...` against a cluster running in a thread
(a zmq hub on ipc, the manager, the scheduler, two workers with the fake task table
run inline; AP held at a gate so there is something to look at)."""
import json
import time

import pytest
import trio
from click.testing import CliRunner

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.nodes.cli import main
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.manager.node import ManagerNode
from zqnode.nodes.wire.sectors import SectorRef, WorkerResources
from zqnode.nodes.scheduler.node import SchedulerNode
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import InlineExecutor
from zqnode.nodes.worker.node import WorkerNode
from tests.chain_stand_in import ChainStandIn
from tests.threaded import trio_thread

TABLE = "tests.nodes.worker.fake_tasks"
GiB = 1 << 30


@pytest.fixture
def cluster(tmp_path):
    async def start(n):
        box = {}
        addr = await n.start(ZmqHub(BusConfig(address=f"ipc://{tmp_path}/bus")).run)

        def me(name):
            return NodeIdentity(name=name, repo=str(tmp_path / name), bus=BusConfig(address=addr))
        box["gate"] = trio.Event()
        box["manager"] = m = ManagerNode(me("mgr"), ManagerConfig(), SealingConfig())
        await n.start(m.run)
        await n.start(SchedulerNode(me("sched"), SchedulerConfig()).run)
        for name in ("w1", "w2"):
            w = WorkerNode(me(name), WorkerConfig(table=TABLE, tasks=["AP", "PC1"]),
                           executor=InlineExecutor(TABLE, {"AP": box["gate"]}),
                           resources_fn=lambda: WorkerResources(cpus=4, mem_physical=8 * GiB,
                                                                mem_used=GiB, gpus=("T4",)))
            await n.start(w.run)
        await ChainStandIn(addr).start(n)               # workers check fetched data with it
        box["addr"] = addr
        return box

    with trio_thread(start, "the cluster") as box:
        yield box


def zq(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def wait_until(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_jobs_workers_sched_diag_and_abort(cluster):
    bus, call, m = cluster["addr"], cluster["call"], cluster["manager"]
    ap = call(m.do, "AP", P.APParams(seal_proof=5, piece=b"p" * 100), SectorRef(miner=1000, number=1), 2048)
    pc2 = call(m.do, "PC2", P.PC2Params(), SectorRef(miner=1000, number=2), 2048)   # nobody takes PC2
    wait_until(lambda: m.tracker.works[ap].state == "running")
    worker = m.tracker.works[ap].worker

    jobs = json.loads(zq("sealing", "jobs", "--json", "--bus", bus).output)
    assert [(j["work_id"], j["task"], j["status"], j["worker"], j["sector"]) for j in jobs] == [
        (ap, "AP", "running", worker, {"miner": 1000, "number": 1}),
        (pc2, "PC2", "queued", "", {"miner": 1000, "number": 2})]
    table = zq("sealing", "jobs", "--bus", bus).output.splitlines()
    assert table[0].split() == ["ID", "SECTOR", "TASK", "STATUS", "WORKER", "AGE"]
    assert table[1].split()[:5] == [ap[:12], "s-1000-1", "AP", "running", worker]
    assert table[2].split()[:5] == [pc2[:12], "s-1000-2", "PC2", "queued", "-"]

    workers = {w["worker"]: w for w in json.loads(zq("sealing", "workers", "--json", "--bus", bus).output)}
    assert sorted(workers) == ["w1", "w2"]
    w = workers[worker]
    assert (w["tasks"], w["cpus"], w["cpus_used"], w["mem_used"], w["gpus"], w["running"]) == (
        ["AP", "PC1"], 4, 1, GiB, ["T4"], {ap: "running"})
    text = zq("sealing", "workers", "--bus", bus).output
    assert f"{worker} (" in text and "CPU 1/4" in text and "GPU 0/1" in text

    diag = json.loads(zq("sealing", "sched-diag", "--json", "--bus", bus).output)
    assert [r["request"] for r in diag["requests"]] == [pc2] and diag["parked"] == []
    assert {x["worker"]: x["running"] for x in diag["workers"]}[worker] == [[ap, "running"]]
    assert "queued requests: 1" in zq("sealing", "sched-diag", "--bus", bus).output

    out = zq("sealing", "abort", ap[:10], "--bus", bus)
    assert out.exit_code == 0 and out.output == f"aborted {ap}\n"
    listing = json.loads(zq("sealing", "jobs", "--json", "--bus", bus).output)
    statuses = {j["work_id"]: j["status"] for j in listing}
    assert statuses[ap] == "aborted"
    again = zq("sealing", "abort", ap, "--bus", bus)
    assert again.exit_code == 1 and "is aborted: cannot abort it" in again.output
    missing = zq("sealing", "abort", "ffffffff", "--bus", bus)
    assert missing.exit_code == 1 and "no work id starts with 'ffffffff'" in missing.output


def test_worker_tasks_enable_disable_and_calls(cluster):
    bus, call, m = cluster["addr"], cluster["call"], cluster["manager"]
    out = zq("worker", "tasks", "disable", "pc1", "--worker", "w1", "--bus", bus)
    assert out.exit_code == 0 and out.output == "w1: AP\n"
    out = zq("worker", "tasks", "enable", "PC2", "--worker", "w1", "--bus", bus)
    assert out.output == "w1: AP PC2\n"

    def offered():
        diag = json.loads(zq("sealing", "workers", "--json", "--bus", bus).output)
        return {w["worker"]: w["tasks"] for w in diag}
    wait_until(lambda: offered()["w1"] == ["AP", "PC2"])
    bad = zq("worker", "tasks", "enable", "C2", "--worker", "w1", "--bus", bus)
    assert bad.exit_code == 1 and "w1 has no task type 'C2'" in bad.output
    nobody = zq("worker", "tasks", "enable", "AP", "--worker", "w9", "--bus", bus)
    assert nobody.exit_code == 1 and "no_route" in nobody.output

    ap = call(m.do, "AP", P.APParams(seal_proof=5, piece=b"q" * 100), SectorRef(miner=1000, number=3), 2048)
    call(trio.sleep, 0.5)
    trio.from_thread.run_sync(cluster["gate"].set, trio_token=cluster["token"])
    call(m.wait, ap)
    worker = m.tracker.works[ap].worker
    calls = json.loads(zq("worker", "calls", "--worker", worker, "--json", "--bus", bus).output)
    assert [(c["work_id"], c["task"], c["state"], c["runs"], c["ok"]) for c in calls] == [
        (ap, "AP", "done", 1, True)]
    assert "AP   done     runs 1  returned" in zq("worker", "calls", "--worker", worker, "--bus", bus).output


def test_run_pipeline_with_the_fake_table(cluster, tmp_path):
    bus = cluster["addr"]
    trio.from_thread.run_sync(cluster["gate"].set, trio_token=cluster["token"])
    for w in ("w1", "w2"):
        zq("worker", "tasks", "enable", "PC2", "--worker", w, "--bus", bus)
        zq("worker", "tasks", "enable", "C1", "--worker", w, "--bus", bus)
    out = zq("sealing", "run-pipeline", "--sectors", "4,5", "--bus", bus, "--timeout", "60")
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert [(r["miner"], r["sector"], r["sector_size"]) for r in records] == [
        (1000, 4, 2048), (1000, 5, 2048)]
    assert out.output.splitlines()[-1].startswith("sealed 2 sectors in")
    bad = zq("sealing", "run-pipeline", "--sectors", "x", "--bus", bus)
    assert bad.exit_code == 1 and "bad --sectors or --seal-proof" in bad.output

