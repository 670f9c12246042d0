"""Real processes over curve tcp, set up as an operator would with `zqnode keys`: a hub,
a worker and `zqnode tail`; a stranger's key refused; a key revoked while in use."""
import json
import os
import subprocess
import time

import pytest

from tests import procs
from tests.procs import Proc


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Curve by default (tcp), and a HOME of our own so no real ~/.zqnode is touched."""
    monkeypatch.delenv("ZQNODE_BUS_SECURITY", raising=False)
    monkeypatch.delenv("ZQNODE_HUB_KEY", raising=False)
    monkeypatch.delenv("ZQNODE_KEY_DIR", raising=False)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path / "home")}


def zqnode(env, *args: str, keys: str | None = None) -> subprocess.CompletedProcess:
    return procs.zqnode(*args, env={**env, "ZQNODE_KEY_DIR": keys} if keys else env)


def ok(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def node_event(kind, node_id, reason=None):
    def pred(line):
        try:
            ev = json.loads(line)
        except ValueError:
            return False
        body = ev.get("body", {})
        who = body.get("node", {}).get("node_id") if kind == "NodeUp" else body.get("node_id")
        return ev.get("kind") == kind and who == node_id and (reason is None or body.get("reason") == reason)
    return pred


def test_a_cluster_with_keys_hub_worker_and_tail(tmp_path, env, free_bus_address):
    bus = free_bus_address()
    hub_dir, w1_dir, reader_dir, stranger_dir = (str(tmp_path / d) for d in ("hub", "w1", "reader", "x"))
    out = ok(zqnode(env, "keys", "init", "--role", "bus", "--repo", hub_dir))
    assert out.startswith("public key ") and "peers need this key" in out
    hub_pub = os.path.join(hub_dir, "node.pub")
    out = ok(zqnode(env, "keys", "init", "--role", "worker", "--name", "w1", "--repo", w1_dir,
                    "--hub-key", hub_pub))
    w1_key = out.split()[2]
    assert f"on the hub: zqnode keys allow '{w1_key}' --role worker --name w1" in out
    ok(zqnode(env, "keys", "init", "--role", "reader", "--repo", reader_dir, "--hub-key", hub_pub))
    ok(zqnode(env, "keys", "init", "--role", "worker", "--name", "x", "--repo", stranger_dir,
              "--hub-key", hub_pub))
    ok(zqnode(env, "keys", "allow", os.path.join(w1_dir, "node.pub"), "--role", "worker", "--name", "w1",
              "--repo", hub_dir))
    ok(zqnode(env, "keys", "allow", os.path.join(reader_dir, "node.pub"), "--role", "reader",
              "--repo", hub_dir))
    listing = json.loads(ok(zqnode(env, "keys", "list", "--repo", hub_dir, "--json")))
    assert sorted((e["role"], e["name"]) for e in listing) == [("reader", ""), ("worker", "w1")]
    assert oct(os.stat(os.path.join(w1_dir, "node.key")).st_mode & 0o777) == "0o600"

    (tmp_path / "hub.toml").write_text(f'[bus]\nkey_dir = "{hub_dir}"\n')
    (tmp_path / "w1.toml").write_text(f'[bus]\nkey_dir = "{w1_dir}"\n')
    procs = []
    try:
        hub = Proc("start", "--role", "bus", "--bus", bus, "--config", str(tmp_path / "hub.toml"), env=env)
        procs.append(hub)
        hub.wait_for(lambda line: "running on" in line)
        tail = Proc("tail", "--bus", bus, "--json", "--topic", "node.", env={**env, "ZQNODE_KEY_DIR": reader_dir})
        procs.append(tail)
        time.sleep(1.0)          # let tail's subscription reach the hub before the first event
        worker = Proc("start", "--role", "worker", "--name", "w1", "--bus", bus,
                      "--repo", str(tmp_path / "w1-repo"), "--config", str(tmp_path / "w1.toml"), env=env)
        procs.append(worker)
        up = json.loads(tail.wait_for(node_event("NodeUp", "w1")))
        assert (up["sender"], up["body"]["node"]["role"]) == ("hub", "worker")

        ping = zqnode(env, "bus", "ping", "w1", "--bus", bus, keys=reader_dir)
        assert "pong from w1 (worker)" in ok(ping)
        nodes = json.loads(ok(zqnode(env, "bus", "nodes", "--bus", bus, "--json", keys=reader_dir)))
        assert [(n["node_id"], n["role"], n["state"]) for n in nodes] == [("w1", "worker", "up")]

        refused = zqnode(env, "bus", "nodes", "--bus", bus, keys=stranger_dir)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "refused this node's key" in refused.stderr and "zqnode keys allow" in refused.stderr
        no_keys = zqnode(env, "bus", "nodes", "--bus", bus, keys=str(tmp_path / "nothing"))
        assert no_keys.returncode != 0 and "no key pair in" in no_keys.stderr

        ok(zqnode(env, "keys", "revoke", w1_key, "--repo", hub_dir))
        tail.wait_for(node_event("NodeDown", "w1", reason="revoked"))
    finally:
        stderr = [p.stop() for p in reversed(procs)]
    assert "refused key" in stderr[-1] and "not on the allow-list" in stderr[-1]   # the hub's log


def test_default_key_directories_fit_together_and_missing_keys_say_what_to_run(env, free_bus_address):
    """No --repo and no --name anywhere, as the README's tour: each error names the command
    that fixes it, and after running those the hub, a worker and the CLI connect."""
    bus, home = free_bus_address(), env["HOME"]
    refused = zqnode(env, "start", "--role", "bus", "--bus", bus)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"no key pair in {home}/.zqnode/hub" in refused.stderr
    assert "`zqnode keys init --role bus`" in refused.stderr
    ok(zqnode(env, "keys", "init", "--role", "bus"))
    hub = Proc("start", "--role", "bus", "--bus", bus, env=env)
    try:
        hub.wait_for(lambda line: line == f"bus hub running on {bus}")
        refused = zqnode(env, "start", "--role", "worker", "--name", "w1", "--bus", bus)
        assert refused.returncode == 1
        assert ("`zqnode keys init --role worker --name w1 --hub-key HUB_NODE_PUB` (HUB_NODE_PUB: "
                "a copy of the hub's node.pub, or the key in it, quoted), then on the hub: `zqnode "
                "keys allow KEY --role worker --name w1`") in refused.stderr
        refused = zqnode(env, "bus", "nodes", "--bus", bus)
        assert refused.returncode == 1 and f"no key pair in {home}/.zqnode/client" in refused.stderr
        assert "`zqnode keys init --role admin --hub-key HUB_NODE_PUB" in refused.stderr

        hub_pub = f"{home}/.zqnode/hub/node.pub"
        w1 = json.loads(ok(zqnode(env, "keys", "init", "--role", "worker", "--name", "w1",
                                  "--hub-key", hub_pub, "--json")))
        assert w1["dir"] == f"{home}/.zqnode/w1"
        ok(zqnode(env, "keys", "allow", w1["key"], "--role", "worker", "--name", "w1"))
        admin = json.loads(ok(zqnode(env, "keys", "init", "--role", "admin", "--hub-key", hub_pub,
                                     "--json")))
        ok(zqnode(env, "keys", "allow", admin["key"], "--role", "admin"))
        worker = Proc("start", "--role", "worker", "--name", "w1", "--bus", bus, env=env)
        try:
            worker.wait_for(lambda line: "running on" in line)
            nodes = json.loads(ok(zqnode(env, "bus", "nodes", "--bus", bus, "--json")))
            assert [(n["node_id"], n["state"]) for n in nodes] == [("w1", "up")]
        finally:
            worker.stop()
    finally:
        hub.stop()
