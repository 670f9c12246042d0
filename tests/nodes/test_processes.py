"""Real processes: a hub, a worker and `zqnode tail --json`; the worker killed -9 and
the hub restarted, as an operator would see it."""
import json
import signal
import time

import pytest

from tests.procs import Proc, zqnode


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    """These processes talk over tcp without keys (test_security_processes.py has keys)."""
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")


def event(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}


def is_node(kind, node_id, reason=None):
    def pred(line):
        ev = event(line)
        body = ev.get("body", {})
        who = body.get("node", {}).get("node_id") if kind == "NodeUp" else body.get("node_id")
        return ev.get("kind") == kind and who == node_id and (reason is None or body.get("reason") == reason)
    return pred


def test_kill_a_worker_then_restart_the_hub(tmp_path, free_bus_address):
    bus = free_bus_address()
    procs = []
    try:
        hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
        procs.append(hub)
        hub.wait_for(lambda line: "running on" in line)
        tail = Proc("tail", "--bus", bus, "--json", "--topic", "node.")
        procs.append(tail)
        time.sleep(1.0)          # let tail's subscription reach the hub before the first event

        worker = Proc("start", "--role", "worker", "--bus", bus, "--name", "w1",
                      "--repo", str(tmp_path / "w1"))
        procs.append(worker)
        up = event(tail.wait_for(is_node("NodeUp", "w1")))
        assert up["topic"] == "node.up" and up["sender"] == "hub"
        resources = up["body"]["node"]["capabilities"]["resources"]
        assert resources["cpus"] >= 1 and resources["memory_total"] > 0

        listing = json.loads(zqnode("bus", "nodes", "--bus", bus, "--json").stdout)
        assert [(n["node_id"], n["role"], n["state"]) for n in listing] == [("w1", "worker", "up")]
        ping = zqnode("bus", "ping", "w1", "--bus", bus)
        assert ping.returncode == 0 and "pong from w1 (worker)" in ping.stdout

        worker.stop(signal.SIGKILL)                          # kill -9: no goodbye
        down = event(tail.wait_for(is_node("NodeDown", "w1", reason="silent")))
        assert down["body"]["role"] == "worker"

        worker = Proc("start", "--role", "worker", "--bus", bus, "--name", "w1",
                      "--repo", str(tmp_path / "w1"))
        procs.append(worker)
        tail.wait_for(is_node("NodeUp", "w1"))

        hub.stop(signal.SIGKILL)                             # the hub dies and comes back
        hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
        procs.append(hub)
        tail.wait_for(is_node("NodeUp", "w1"))               # the worker registered again
        listing = json.loads(zqnode("bus", "nodes", "--bus", bus, "--json").stdout)
        assert [(n["node_id"], n["state"]) for n in listing] == [("w1", "up")]
    finally:
        for p in reversed(procs):
            p.stop()


def test_sigterm_stops_a_node_cleanly_and_it_says_goodbye(tmp_path, free_bus_address):
    bus = free_bus_address()
    hub = Proc("start", "--role", "bus", "--bus", bus)
    try:
        hub.wait_for(lambda line: "running on" in line)
        tail = Proc("tail", "--bus", bus, "--json", "--topic", "node.")
        time.sleep(1.0)
        worker = Proc("start", "--role", "worker", "--bus", bus, "--name", "w2",
                      "--repo", str(tmp_path / "w2"))
        tail.wait_for(is_node("NodeUp", "w2"))
        worker.stop(signal.SIGTERM)
        assert worker.p.returncode == 0
        tail.wait_for(is_node("NodeDown", "w2", reason="left"))
        tail.stop()
    finally:
        hub.stop()
    assert hub.p.returncode == 0


@pytest.mark.parametrize("args, message", [
    (["start", "--role", "miner"], "unknown role 'miner'"),
    (["start", "--role", "worker", "--bus", "udp://x"], "bad bus address"),
    (["bus", "nodes", "--bus", "tcp://127.0.0.1:1"], "no hub answers at tcp://127.0.0.1:1"),
])
def test_operator_mistakes_get_one_line_errors(args, message):
    out = zqnode(*args)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_bad_config_file_names_the_key(tmp_path, free_bus_address):
    cfg = tmp_path / "node.toml"
    cfg.write_text('[bus]\nheartbeat_s = "fast"\n')
    out = zqnode("start", "--role", "worker", "--config", str(cfg))
    assert out.returncode != 0 and "$.bus.heartbeat_s" in out.stderr and str(cfg) in out.stderr
    cfg.write_text('[bus]\nheartbeats = 2\n')
    out = zqnode("start", "--role", "worker", "--config", str(cfg))
    assert out.returncode != 0 and "heartbeats" in out.stderr


def test_devnet_runs_the_whole_cluster_until_ctrl_c(tmp_path, free_bus_address):
    bus = free_bus_address()
    devnet = Proc("devnet", "--bus", bus, "--repo", str(tmp_path / "devnet"), "--sectors", "1")
    try:
        line = devnet.wait_for(lambda line: line.startswith("devnet: bus hub at"))
        assert bus in line
        devnet.wait_for(lambda line: line.startswith("devnet: pledged sector 1"))
        ping = zqnode("bus", "ping", "devnet-worker-1", "--bus", bus)
        assert "pong from devnet-worker-1 (worker)" in ping.stdout
        nodes = json.loads(zqnode("bus", "nodes", "--json", "--bus", bus).stdout)
        assert sorted(n["role"] for n in nodes if n["state"] == "up") == [
            "chain", "manager", "poster", "scheduler", "worker", "worker"]
    finally:
        devnet.stop(signal.SIGINT)
    assert devnet.p.returncode == 0
