"""The sealing cluster end to end, in real processes over a tcp hub: a manager, a
scheduler and two workers (and a chain, which workers check fetched sectors against) seal two 2 KiB sectors AP -> PC1 -> PC2 -> C1 with the real
proofs functions, while the test kills -9 a worker in the middle of PC1 and the
manager between a PC2 result's return and its consumption. Everything finishes, every
C1 proof verifies, no task runs again once its result was stored, no result is lost.

Test hooks: ZQNODE_TASK_HOLD (tasks wait while hold-TASK exists, after writing a
started-TASK-SECTOR.PID marker naming their worker), ZQNODE_TASK_LOG (a line per task
start and end), and the driver's --hold-dir (it waits before consuming a TASK result
while hold-consume-TASK exists)."""
import json
import signal
import sqlite3
from collections import Counter, defaultdict

from zqnode.bus import keys
from zqnode.proofs.porep import verify_seal
from tests.procs import Proc, until, zqnode


def test_two_sectors_survive_a_worker_kill_in_pc1_and_a_manager_kill_before_consumption(
        tmp_path, free_bus_address):
    bus = free_bus_address()
    hold = tmp_path / "hold"
    hold.mkdir()
    (hold / "hold-PC1").touch()                     # PC1 waits until the worker was killed
    (hold / "hold-consume-PC2").touch()             # PC2 results wait unconsumed
    log = tmp_path / "tasks.log"
    env = {"ZQNODE_TASK_HOLD": str(hold), "ZQNODE_TASK_LOG": str(log),
           "ZQNODE_PARENT_CACHE": str(tmp_path / "parents")}
    procs: list[Proc] = []
    # the default security: curve keys for every node, the hub's allow-list, an admin client
    keys.provision(tmp_path / "hub", [(str(tmp_path / n), r, n) for r, n in
                                      [("manager", "mgr"), ("scheduler", "sched"), ("worker", "w1"),
                                       ("worker", "w2"), ("chain", "chain")]]
                  + [(str(tmp_path / "client"), "admin", "")])
    client_env = {"ZQNODE_KEY_DIR": str(tmp_path / "client")}

    def start(role: str, name: str) -> Proc:
        proc = Proc("start", "--role", role, "--name", name, "--bus", bus,
                    "--repo", str(tmp_path / name), env=env)
        procs.append(proc)
        return proc

    try:
        hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
        procs.append(hub)
        hub.wait_for(lambda line: "running on" in line)
        nodes = {name: start(role, name) for role, name in
                 [("manager", "mgr"), ("scheduler", "sched"), ("worker", "w1"), ("worker", "w2"),
                  ("chain", "chain")]}
        for proc in nodes.values():
            proc.wait_for(lambda line: "running on" in line)
        driver = Proc("sealing", "run-pipeline", "--sectors", "1,2", "--bus", bus,
                      "--hold-dir", str(hold), "--timeout", "180", env=client_env)
        procs.append(driver)

        # both PC1s start and wait; kill -9 the worker running sector 1's
        markers = until(lambda: (lambda found: found if len(found) == 2 else None)(
            sorted(hold.glob("started-PC1-*"))), what="both PC1s to start")
        first = next(m for m in markers if m.name.startswith("started-PC1-s-1000-1."))
        victim = first.read_text()
        nodes[victim].stop(signal.SIGKILL)
        first.unlink()
        nodes[victim] = start("worker", victim)          # same name, same repo: a restart
        nodes[victim].wait_for(lambda line: "running on" in line)
        rerun = until(lambda: list(hold.glob("started-PC1-s-1000-1.*")), what="PC1 to run again")
        assert rerun[0].read_text() == victim             # resumed from its call store
        (hold / "hold-PC1").unlink()

        # a PC2 result is returned and held unconsumed: kill -9 the manager there
        line = driver.wait_for(lambda line: line.startswith("holding PC2"))
        held = line.split()[-1]
        jobs = json.loads(zqnode("sealing", "jobs", "--json", "--bus", bus, env=client_env).stdout)
        assert {j["work_id"]: j["status"] for j in jobs}[held] == "returned"
        nodes["mgr"].stop(signal.SIGKILL)
        nodes["mgr"] = start("manager", "mgr")
        nodes["mgr"].wait_for(lambda line: "running on" in line)
        (hold / "hold-consume-PC2").unlink()

        records = [json.loads(driver.wait_for(lambda line: line.startswith("{"), timeout=120))
                   for _ in range(2)]
        driver.wait_for(lambda line: line.startswith("sealed 2 sectors"))
        assert "PC2 s-1000-" in "".join(driver.seen) and any(
            "asked again: same work, same result" in seen for seen in driver.seen)

        # every proof verifies
        for r in records:
            assert verify_seal(seal_proof=r["seal_proof"], miner=r["miner"], sector=r["sector"],
                               ticket=bytes.fromhex(r["ticket"]), seed=bytes.fromhex(r["seed"]),
                               comm_d=bytes.fromhex(r["comm_d"]), comm_r=bytes.fromhex(r["comm_r"]),
                               proof=bytes.fromhex(r["proof"]))
        assert sorted(r["sector"] for r in records) == [1, 2]

        # nothing ran again after its result was stored; sector 1's PC1 ran twice in one call
        events = [json.loads(x) for x in log.read_text().splitlines()]
        ends = Counter(e["work_id"] for e in events if e["event"] == "end")
        assert len(ends) == 8 and set(ends.values()) == {1}
        by_work = defaultdict(list)
        for e in events:
            by_work[e["work_id"]].append(e["event"])
        assert all(seq[-1] == "end" for seq in by_work.values())
        pc1 = [e for e in events if e["task"] == "PC1" and e["sector"] == 1]
        assert [e["event"] for e in pc1] == ["start", "start", "end"]
        assert len({e["call_id"] for e in pc1}) == 1 and {e["worker"] for e in pc1} == {victim}
        calls = json.loads(zqnode("worker", "calls", "--worker", victim, "--json", "--bus", bus, env=client_env).stdout)
        assert {c["call_id"]: c["runs"] for c in calls}[pc1[0]["call_id"]] == 2
        assert all(c["state"] == "done" and c["ok"] for c in calls)

        # the manager kept nothing it should not: every result was consumed
        until(lambda: json.loads(zqnode("sealing", "jobs", "--json", "--bus", bus, env=client_env).stdout) == [],
              what="all work consumed")
        db = sqlite3.connect(tmp_path / "mgr" / "manager.sqlite")
        assert db.execute("SELECT count(*) FROM works").fetchone() == (0,)
        db.close()
    finally:
        for p in reversed(procs):
            p.stop()
