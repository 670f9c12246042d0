"""The sector lifecycle at scale, in a real process: `zqnode devnet --batch` with 16 CC
sectors, killed with SIGKILL once a PreCommit batch is sent and once a commit aggregate
is sent (each before it lands), restarted on the same repo. Every sector reaches Proving
once, through one PreCommitSectorBatch2 and one ProveCommitSectors3: nothing was sent
twice and nothing lost. Then, from another terminal, one sector's expiration is extended
and another is terminated: its power goes and the sealing machine removes it."""
import json
import pathlib
import signal

import pytest

from zqnode.nodes.chain.store import ChainStore
from zqnode.nodes.chain.verifiers import FAKE
from tests.nodes.test_devnet_e2e import sectors
from tests.procs import Proc, until, zqnode

SECTORS = 16


@pytest.fixture(autouse=True)
def client_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("ZQNODE_KEY_DIR", str(tmp_path / "client"))


def devnet(repo: pathlib.Path, bus: str) -> Proc:
    return Proc("devnet", "--repo", str(repo), "--bus", bus, "--sectors", str(SECTORS), "--batch",
                "--epoch-seconds", "0.3", "--refresh", "0.5")


def chain_json(bus: str, *args: str) -> dict:
    out = zqnode("chain", *args, "--json", "--bus", bus)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_batched_sectors_survive_kill_9_between_send_and_land_then_extend_and_terminate(
        tmp_path, free_bus_address):
    repo, bus = tmp_path / "devnet", free_bus_address()
    net = devnet(repo, bus)
    try:
        net.wait_for(lambda line: line.startswith("devnet: pledged sectors 1, 2"))
        for sent in ("PreCommitBatchWait", "CommitAggregateWait"):
            until(lambda: any(s["state"] == sent for s in sectors(repo).values()), 150, f"a sector in {sent}")
            net.kill9()
            net = devnet(repo, bus)
            net.wait_for(lambda line: line.startswith(f"devnet: resuming {SECTORS} sectors"))
        net.wait_for(lambda line: line.startswith(f"devnet: all {SECTORS} sectors are Proving"), timeout=150)

        one = chain_json(bus, "sector", "1")["sector"]
        out = zqnode("sectors", "extend", "1", "--expiration", str(one["expiration"] + 1000), "--bus", bus)
        assert out.returncode == 0 and out.stdout.startswith("sector 1: ExtendSectorExpiration2 sent as "), out.stderr
        until(lambda: chain_json(bus, "sector", "1")["sector"]["expiration"] == one["expiration"] + 1000,
              60, "sector 1 extended")
        out = zqnode("sectors", "terminate", "2", "--bus", bus)
        assert out.returncode == 0, out.stderr
        until(lambda: sectors(repo)[2]["state"] == "Removed", 120, "sector 2 terminated and removed")
    finally:
        net.stop(signal.SIGINT)
    assert net.p.returncode == 0

    store = ChainStore(repo / "chain" / "chain.sqlite")
    chain = store.load(store.genesis(), FAKE)
    store.close()
    landed = [m.method for ts in chain.tipsets for m, r in zip(ts.messages, ts.receipts) if r.exit_code == 0]
    assert landed.count("PreCommitSectorBatch2") == landed.count("ProveCommitSectors3") == 1, landed
    assert "PreCommitSector" not in landed and "ProveCommitSector" not in landed
    assert landed.count("TerminateSectors") == landed.count("ExtendSectorExpiration2") == 1
    m = chain.miner_view(1000)
    assert (m.sectors, m.terminated) == (SECTORS - 1, 1) and chain.sector(1000, 2) is None
    assert {n: s["state"] for n, s in sectors(repo).items()} == {
        n: "Removed" if n == 2 else "Proving" for n in range(1, SECTORS + 1)}
