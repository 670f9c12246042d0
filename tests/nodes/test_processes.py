"""Real processes: a hub, a worker and `zqnode tail --json`; the worker killed -9 and
the hub restarted, as an operator would see it; Ctrl-C on the commands that run until
stopped; what `start` and `devnet` refuse before starting anything (a repo in use, a port
taken)."""
import json
import signal
import socket
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
    hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
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
    (["start", "--role", "miner"],
     "'miner' is not one of 'bus', 'chain', 'manager', 'scheduler', 'worker', 'poster'"),
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
    bus, repo = free_bus_address(), tmp_path / "devnet"
    devnet = Proc("devnet", "--bus", bus, "--repo", str(repo), "--sectors", "1")
    try:
        line = devnet.wait_for(lambda line: line.startswith("devnet: bus hub at"))
        assert bus in line
        devnet.wait_for(lambda line: line.startswith("devnet: pledged sector 1"))
        ping = zqnode("bus", "ping", "devnet-worker-1", "--bus", bus)
        assert "pong from devnet-worker-1 (worker)" in ping.stdout
        nodes = json.loads(zqnode("bus", "nodes", "--json", "--bus", bus).stdout)
        assert sorted(n["role"] for n in nodes if n["state"] == "up") == [
            "chain", "manager", "poster", "scheduler", "worker", "worker"]

        # a second devnet on the same repo is refused, naming the first; one on the same
        # port, before it touches its repo
        second = zqnode("devnet", "--bus", free_bus_address(), "--repo", str(repo))
        assert second.returncode == 1
        assert second.stderr.splitlines() == [f"Error: {repo} is in use by another zqnode process "
                                              f"(pid {devnet.p.pid}): stop it, or give this one "
                                              f"another --repo"]
        other = tmp_path / "other"
        second = zqnode("devnet", "--bus", bus, "--repo", str(other))
        assert second.returncode == 1 and f"the hub cannot listen on {bus}: Address already in " \
            "use; nothing was started" in second.stderr
        assert not (other / "manager").exists()
        worker = zqnode("start", "--role", "worker", "--bus", bus, "--repo", str(repo / "worker-1"))
        assert worker.returncode == 1 and f"(pid {devnet.p.pid})" in worker.stderr
    finally:
        devnet.stop(signal.SIGINT)
    assert devnet.p.returncode == 0


def test_ctrl_c_stops_tail_and_live_status_with_one_line(tmp_path):
    bus = f"ipc://{tmp_path}/bus"
    hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
    try:
        hub.wait_for(lambda line: "running on" in line)
        tail = Proc("tail", "--bus", bus)
        status = Proc("status", "--bus", bus, "--timeout", "0.5")
        status.wait_for(lambda line: line.startswith("zqnode status at"))
        tail.wait_for_stderr("zqnode tail: following")       # up, not still starting
        for p, name in ((tail, "tail"), (status, "status")):
            said = p.stop(signal.SIGINT)
            assert said.splitlines()[-1] == f"zqnode {name}: stopped (Ctrl-C)", said
            assert "Traceback" not in said
            assert p.p.returncode == 130
    finally:
        hub.stop()


def test_a_node_checks_its_repo_and_ports_before_it_starts(tmp_path):
    bus = f"ipc://{tmp_path}/bus"
    hub = Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub"))
    taken = socket.socket()
    try:
        hub.wait_for(lambda line: "running on" in line)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        w1 = ["start", "--role", "worker", "--name", "w1", "--bus", bus, "--repo", str(tmp_path / "w1")]
        out = zqnode(*w1, "--metrics-listen", f"127.0.0.1:{port}")
        assert out.returncode == 1 and out.stderr.splitlines() == [
            f"Error: metrics cannot listen on 127.0.0.1:{port}: Address already in use; "
            "nothing was started"]
        assert json.loads(zqnode("bus", "nodes", "--bus", bus, "--json").stdout) == []
        second_hub = zqnode("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / "hub2"))
        assert f"the hub cannot listen on {bus}: another process answers on it" in second_hub.stderr

        worker = Proc(*w1)
        worker.wait_for(lambda line: "running on" in line)
        again = zqnode(*w1)
        assert again.returncode == 1 and f"{tmp_path / 'w1'} is in use by another zqnode process " \
            f"(pid {worker.p.pid})" in again.stderr
        worker.stop()
        assert worker.p.returncode == 0
        worker = Proc(*w1)                    # the lock went with the process
        worker.wait_for(lambda line: "running on" in line)
        worker.kill9()
        worker = Proc(*w1)                    # kill -9 too
        worker.wait_for(lambda line: "running on" in line)
        worker.stop()
    finally:
        taken.close()
        hub.stop()
