"""`zqnode status` against a devnet-like cluster (chain with 0.05 s epochs, manager with
its sector state machine, scheduler, two workers running fake tasks, poster) in a thread
over real ipc sockets: two CC sectors are sealed, then `--once --json` and the text view
show what the nodes hold."""
import json
import time

import pytest
from click.testing import CliRunner

from zqnode.nodes.cli import main
from zqnode.nodes.cli.status import render
from tests.nodes.observe.cluster import cluster_in_thread


@pytest.fixture
def devnet(tmp_path):
    with cluster_in_thread(tmp_path, "st", hold=("PC2",), pledge=2) as running:
        yield running


def wait_for(pred, what: str) -> None:
    deadline = time.monotonic() + 60
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def status(devnet, *args):
    result = CliRunner().invoke(main, ["status", "--bus", devnet.address, *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_once_json_and_text_reflect_the_devnet(devnet):
    c = devnet.cluster
    sealing = c.manager.sealing
    wait_for(lambda: [w.state for w in c.manager.jobs() if w.task == "PC2"] == ["running"] * 2,
             "PC2 of both sectors running")
    mid = json.loads(status(devnet, "--once", "--json"))       # PC2 held at its gate
    assert mid["errors"] == {}
    assert mid["sectors"]["by_state"] == {"PreCommit2": 2}
    running = sorted((t["task"], t["sector"], t["state"]) for w in mid["workers"] for t in w["running"])
    assert running == [("PC2", f"s-1000-{n}", "running") for n in sorted(sealing.core.sectors)]
    assert len(running) == 2
    assert sorted((j["task"], j["status"]) for j in mid["jobs"]["active"]) == [("PC2", "running")] * 2
    assert sum(w["cpus_reserved"] for w in mid["workers"]) > 0

    devnet.release("PC2")
    wait_for(lambda: [s.state for s in sealing.core.sectors.values()] == ["Proving"] * 2,
             "both sectors proving")
    snap = json.loads(status(devnet, "--once", "--json"))
    assert snap["errors"] == {} and snap["problems"] == {}
    chain = snap["chain"]
    assert (chain["network"], chain["miners"], chain["epoch_seconds"]) == ("devnet", [1000], 0.05)
    assert 0 < chain["epoch"] <= c.chain.chain.head.epoch
    assert snap["sectors"] == {"total": 2, "by_state": {"Proving": 2}, "paused": [], "errors": {},
                               "head": snap["sectors"]["head"]}
    workers = {w["name"]: w for w in snap["workers"]}
    assert set(workers) == {"st-worker-1", "st-worker-2"}
    for w in workers.values():
        assert (w["enabled"], w["cpus"], w["cpus_reserved"], w["memory"], w["memory_used"],
                w["running"]) == (True, 8, 0, 16 << 30, 1 << 30, [])
    assert snap["jobs"]["active"] == []
    (proving,) = snap["deadlines"]
    assert proving["miner"] == "f01000"
    assert sum(d["sectors"] for d in proving["next"]) == 2

    lines = status(devnet, "--once").splitlines()
    assert lines[0].startswith("zqnode status at ")
    assert lines[1].startswith("chain     epoch ") and "(devnet, 0.05 s epochs" in lines[1]
    assert "sectors   2: Proving 2" in lines
    assert "workers   2" in lines
    assert sum(line.startswith("  st-worker-") and "cpu 0/8" in line for line in lines) == 2
    assert any(line.startswith("proving   f01000: deadline ") for line in lines)
    assert sum(line.startswith("  dl ") and "sectors" in line for line in lines) >= 1


def test_a_role_that_does_not_answer_is_named():
    snap = {"time": 0.0, "chain": None, "sectors": None, "workers": None, "jobs": None,
            "deadlines": None, "errors": {"chain": "no node with role chain"}}
    assert render(snap).splitlines()[1:] == ["(chain: no node with role chain)"]


def test_problems_nodes_report_come_first():
    snap = {"time": 0.0, "chain": None, "sectors": None, "workers": None, "jobs": None,
            "deadlines": None, "errors": {},
            "problems": {"w1": {"store": "cannot write calls.sqlite: database or disk is full"}}}
    assert render(snap).splitlines()[1:] == [
        "PROBLEM   w1: store: cannot write calls.sqlite: database or disk is full"]
