"""Tasks in real subprocesses (real clock): results come back through the pipe, a
failing task is a failed result, an abort kills the process, and a worker's call is
aborted end to end (the computation really stops)."""
import itertools
import os
import pathlib
import subprocess
import sys
import threading
import time

import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.wire.sectors import SectorRef, WorkerResources
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import SubprocessExecutor
from zqnode.nodes.worker.node import WorkerNode
from zqnode.nodes.worker.task import TaskInput
from zqnode.nodes.wire.worker import WorkerAbort, WorkerRun

ROOT = pathlib.Path(__file__).resolve().parents[3]

_names = itertools.count()
TABLE = "tests.nodes.worker.fake_tasks"


def task_input(tmp_path, task="AP", params=None, call_id="call-1") -> TaskInput:
    return TaskInput(table=TABLE, task=task, work_id="work-1", call_id=call_id, worker="w1",
                     miner=1000, number=1, sector_size=2048,
                     sector_dir=str(tmp_path / "sectors" / "s-1000-1"), repo=str(tmp_path),
                     params=P.encode(params or P.APParams(seal_proof=5, piece=b"abc" * 50)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_task_runs_in_a_subprocess_and_its_result_comes_back(tmp_path):
    ex = SubprocessExecutor(tmp_path / "logs")
    out = await ex.run(task_input(tmp_path))
    assert out.ok and out.error == ""
    assert P.decode_result("AP", out.result).payload_size == 150
    assert (tmp_path / "sectors" / "s-1000-1" / "unsealed").read_bytes() == b"abc" * 50
    failed = await ex.run(task_input(tmp_path, "PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32),
                                     call_id="call-2"))
    assert failed.ok  # AP is there now
    bad = await ex.run(task_input(tmp_path, "AP", P.APParams(seal_proof=5, piece=b"fail!"), call_id="c3"))
    assert not bad.ok and bad.error == "ValueError: fake AP: asked to fail"
    assert "fake AP: asked to fail" in (tmp_path / "logs" / "c3.log").read_text()   # its traceback


async def test_cancelling_a_task_kills_its_process(tmp_path, monkeypatch):
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "hold-AP").touch()
    monkeypatch.setenv("ZQNODE_TASK_HOLD", str(hold))
    ex = SubprocessExecutor(tmp_path / "logs")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ex.run, task_input(tmp_path))
        with trio.fail_after(20):
            while not list(hold.glob("started-AP-*")):
                await trio.sleep(0.05)
        pid = ex.pids["call-1"]
        assert alive(pid)
        nursery.cancel_scope.cancel()
    assert not alive(pid) and ex.pids == {}
    assert not (tmp_path / "sectors" / "s-1000-1" / "unsealed").exists()   # it never got further


async def test_aborting_a_call_kills_the_computation(tmp_path, monkeypatch, nursery, Fakes):
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "hold-AP").touch()
    monkeypatch.setenv("ZQNODE_TASK_HOLD", str(hold))
    bus = await nursery.start(MemoryHub(BusConfig(address=f"mem://sub-{next(_names)}")).run)
    fakes = await Fakes(bus).start(nursery)
    me = NodeIdentity(name="w1", repo=str(tmp_path / "w1"), bus=BusConfig(address=bus))
    w = WorkerNode(me, WorkerConfig(table=TABLE), resources_fn=lambda: WorkerResources(cpus=2, mem_physical=1 << 30))
    await nursery.start(w.run)
    accepted = await fakes.scheduler.call("w1", WorkerRun(
        request="work-ap", task="AP", sector=SectorRef(miner=1000, number=1), sector_size=2048,
        params=P.encode(P.APParams(seal_proof=5, piece=b"x" * 100))))
    with trio.fail_after(20):
        while accepted.call_id not in w.executor.pids:
            await trio.sleep(0.05)
    pid = w.executor.pids[accepted.call_id]
    assert alive(pid)
    await fakes.scheduler.call("w1", WorkerAbort(request="work-ap"))
    with trio.fail_after(20):
        while not (fakes.returns and fakes.done):
            await trio.sleep(0.05)
    assert not alive(pid)
    assert fakes.returns[0][1:] == (accepted.call_id, False, b"", "aborted")
    assert fakes.done == [("work-ap", False)]
    assert w.store.get(accepted.call_id).runs == 1


_CHILD = """
import os, sys, time
from zqnode.nodes.worker.task import _die_with_parent
_die_with_parent(int(sys.argv[1]), every_s=0.05)
time.sleep(float(sys.argv[2]))
open(sys.argv[3], "w").write("done")
"""


def test_a_task_outlives_the_thread_that_started_it(tmp_path):
    # trio starts processes from worker threads that come and go; a task must not die
    # with that thread (PR_SET_PDEATHSIG did that, killing every task past 10 s)
    done = tmp_path / "done"
    procs = []
    starter = threading.Thread(target=lambda: procs.append(subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(os.getpid()), "0.5", str(done)], cwd=ROOT)))
    starter.start()
    starter.join()                                  # the starting thread is gone now
    assert procs[0].wait(timeout=30) == 0 and done.read_text() == "done"


def test_a_task_exits_when_its_worker_dies(tmp_path):
    # a middle process starts the task and is killed -9: the task must not run on
    pidfile, done = tmp_path / "pid", tmp_path / "done"
    middle = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {_CHILD!r}, str(os.getpid()), '30', {str(done)!r}])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n")], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    task = int(pidfile.read_text())
    middle.kill()
    middle.wait()
    while _alive(task):
        assert time.monotonic() < deadline, "the task kept running after its worker died"
        time.sleep(0.05)
    assert not done.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:            # a zombie has finished
        return f.read().split()[2] != "Z"
