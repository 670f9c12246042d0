"""`zqnode start --metrics-listen`: a hub and a chain node in real processes each serve
/metrics on the port they print, with their own families; `--log-format json` makes
their log lines JSON."""
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request

from zqnode.nodes.observe.metrics import parse

ROOT = pathlib.Path(__file__).resolve().parents[3]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "zqnode.nodes.cli", "--log-format", "json", "start",
                             *args, "--metrics-listen", "127.0.0.1:0"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def metrics_url(p: subprocess.Popen) -> str:
    line = p.stdout.readline()
    m = re.search(r"; metrics on (http://\S+)$", line.strip())
    assert m, (line, p.poll())
    return m.group(1)


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return parse(reply.read().decode())


def test_start_serves_metrics(tmp_path):
    bus = f"ipc://{tmp_path}/bus"
    hub = start("--role", "bus", "--bus", bus, "--name", "hub-m", "--repo", str(tmp_path / "hub"))
    chain = None
    try:
        hub_url = metrics_url(hub)
        chain = start("--role", "chain", "--bus", bus, "--name", "chain-m",
                      "--repo", str(tmp_path / "chain"))
        chain_url = metrics_url(chain)
        deadline = time.monotonic() + 20
        while (got := scrape(chain_url)).get("zqnode_chain_epoch", {}).get(
                (("node", "chain-m"),), 0) < 2:
            assert time.monotonic() < deadline, got.get("zqnode_chain_epoch")
            time.sleep(0.2)
        assert got["zqnode_node_info"] == {(("node", "chain-m"), ("role", "chain")): 1}
        hub_scrape = scrape(hub_url)
        assert hub_scrape["zqnode_hub_nodes"] == {
            (("node", "hub-m"), ("role", "chain"), ("state", s)): int(s == "up")
            for s in ("up", "down", "left")}
        assert hub_scrape["zqnode_bus_messages_total"][
            (("channel", "rpc"), ("direction", "in"), ("kind", "Register"), ("node", "hub-m"))] == 1
    finally:
        for p in (chain, hub):
            if p is not None:
                p.terminate()
                p.wait(10)
    records = [json.loads(line) for line in hub.stderr.read().splitlines() if line.startswith("{")]
    assert any(r["logger"] == "zqnode.observe.http" and r["msg"].startswith("metrics on ")
               for r in records), records[:5]
