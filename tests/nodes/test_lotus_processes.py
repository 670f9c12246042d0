"""docs/chain.md's chain-watcher in real processes: a devnet chain serving the Lotus API on
one bus, `zqnode start --role chain --lotus URL --lotus-token FILE` following it on
another, and the chain commands asking the watcher."""
import json
import signal
import socket
import sqlite3

from tests.procs import Proc, until, zqnode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_chain_commands_read_a_devnet_through_the_chain_watcher(tmp_path, free_bus_address, monkeypatch):
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")         # two throw-away buses on one machine
    devnet_bus, watcher_bus, port = free_bus_address(), free_bus_address(), _free_port()
    (tmp_path / "devnet-chain.toml").write_text(
        f'[chain]\nverifier = "fake"\nepoch_seconds = 0.2\nlotus_listen = "127.0.0.1:{port}"\n')
    (tmp_path / "watcher.toml").write_text("[chain]\nminers = [1000]\n")
    procs = []
    try:
        for bus, name in ((devnet_bus, "hub-a"), (watcher_bus, "hub-b")):
            procs.append(Proc("start", "--role", "bus", "--bus", bus, "--repo", str(tmp_path / name)))
            procs[-1].wait_for(lambda line: "running on" in line)
        procs.append(Proc("start", "--role", "chain", "--name", "devnet-chain", "--bus", devnet_bus,
                          "--repo", str(tmp_path / "devnet"), "--config", str(tmp_path / "devnet-chain.toml")))
        procs[-1].wait_for(lambda line: "running on" in line)
        token = tmp_path / "devnet" / "lotus-token"
        procs.append(Proc("start", "--role", "chain", "--name", "chain-1", "--bus", watcher_bus,
                          "--repo", str(tmp_path / "watcher"), "--config", str(tmp_path / "watcher.toml"),
                          "--lotus", f"ws://127.0.0.1:{port}/rpc/v1", "--lotus-token", str(token)))
        procs[-1].wait_for(lambda line: "running on" in line)

        def head():
            out = zqnode("chain", "head", "--bus", watcher_bus, "--json")
            return out.returncode == 0 and json.loads(out.stdout)
        seen = until(head, 30, "the watcher's head")
        assert seen["network"] == "devnet" and seen["miners"] == [1000]
        direct = json.loads(zqnode("chain", "head", "--bus", devnet_bus, "--json").stdout)
        assert abs(direct["head"]["epoch"] - seen["head"]["epoch"]) <= 5
        miner = json.loads(zqnode("chain", "miner", "--miner", "f01000", "--bus", watcher_bus, "--json").stdout)
        assert miner["worker"] == "t0100" and miner["sector_size"] == 2048
        out = zqnode("chain", "deadline", "0", "--miner", "1000", "--bus", watcher_bus)
        assert out.returncode == 0, out.stderr
        out = zqnode("chain", "reorg", "--depth", "1", "--bus", watcher_bus)
        assert out.returncode != 0 and "follows a Lotus node" in out.stderr + out.stdout
    finally:
        for p in reversed(procs):
            p.stop()


def test_the_devnet_seals_and_proves_through_the_chain_watcher(tmp_path, free_bus_address, monkeypatch):
    """`zqnode devnet --via-lotus`: the cluster's chain role is the chain-watcher, following
    the devnet's chain over the Lotus API; a sector is sealed to Proving and its first
    WindowPoSt lands, every message sent through MpoolPushMessage."""
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")
    bus, repo = free_bus_address(), tmp_path / "devnet"
    devnet = Proc("devnet", "--bus", bus, "--repo", str(repo), "--sectors", "1", "--workers", "1",
                  "--epoch-seconds", "0.3", "--via-lotus")
    try:
        line = devnet.wait_for(lambda line: line.startswith("devnet: Lotus API on"))
        assert "through the chain-watcher" in line
        devnet.wait_for(lambda line: line.startswith("devnet: all 1 sectors are Proving"), timeout=180)
        devnet.wait_for(lambda line: line.startswith("devnet: the first WindowPoSt landed"), timeout=180)
        nodes = json.loads(zqnode("bus", "nodes", "--json", "--bus", bus).stdout)
        assert [n["node_id"] for n in nodes if n["role"] == "chain" and n["state"] == "up"] == ["devnet-chain"]
        head = json.loads(zqnode("chain", "head", "--bus", bus, "--json").stdout)
        assert head["genesis"].startswith("bafy2bzace") and not head["reorg_allowed"]   # the watcher answers
        with sqlite3.connect(repo / "chain" / "watcher.sqlite") as db:
            methods = {m for (m,) in db.execute("SELECT method FROM sent")}
        assert {"PreCommitSector", "ProveCommitSector", "SubmitWindowedPoSt"} <= methods
    finally:
        devnet.stop(signal.SIGINT)
    assert devnet.p.returncode == 0
