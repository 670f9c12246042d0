"""`zqnode chain ...` against a hub and a chain node running in a thread (real ipc sockets)."""
import json
import time

import pytest
from click.testing import CliRunner

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.chain.testing import comm_d_of, comm_r_of
from zqnode.nodes.cli import main
from zqnode.nodes.cli.common import with_client
from zqnode.nodes.identity import NodeIdentity
from zqnode.proofs import cid as cids
from tests.threaded import trio_thread


@pytest.fixture
def chain_bus(tmp_path):
    """A hub and a devnet chain (0.05 s epochs) in a thread; yields (address, node)."""
    async def start(n):
        addr = await n.start(ZmqHub(BusConfig(address=f"ipc://{tmp_path}/bus")).run)
        node = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"),
                                    bus=BusConfig(address=addr)),
                         ChainConfig(verifier="fake", epoch_seconds=0.05))
        await n.start(node.run)
        return {"addr": addr, "node": node}

    with trio_thread(start, "hub and chain") as box:
        yield box["addr"], box["node"]


def zq(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def wait_for_epoch(bus: str, epoch: int) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = json.loads(zq("chain", "head", "--json", "--bus", bus).output)
        if info["head"]["epoch"] >= epoch:
            return info
        time.sleep(0.05)
    raise AssertionError(f"the chain did not reach epoch {epoch}")


def test_head_reorg_miner_deadline_sector_message(chain_bus):
    bus, _ = chain_bus
    info = wait_for_epoch(bus, 4)
    assert (info["network"], info["miners"], info["reorg_allowed"]) == ("devnet", [1000], True)
    assert len(info["head"]["key"]) == 64 and len(info["head"]["beacon"]) == 64     # hex
    text = zq("chain", "head", "--bus", bus).output
    assert text.startswith("epoch ") and "network devnet" in text and "miners f01000" in text

    # a pre-commit pushed as the sealing state machine would, then seen from the CLI
    msg = M.Message.call("t0100", 1000, M.PreCommitSectorParams(
        sector_number=3, seal_proof=5, sealed_cid=cids.sealed_cid(comm_r_of(1000, 3)),
        unsealed_cid=cids.piece_cid_v1(comm_d_of(1000, 3)), seal_rand_epoch=1))
    msg_id = with_client(bus, lambda peer: BusChainAPI(peer).push(msg)).id
    deadline = time.monotonic() + 20
    while (look := json.loads(zq("chain", "message", msg_id, "--json", "--bus", bus).output)
           )["status"] != "landed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert look["receipt"]["exit_code"] == 0
    assert f"{msg_id}: landed at {look['epoch']}" in zq("chain", "message", msg_id, "--bus", bus).output
    out = zq("chain", "sector", "3", "--bus", bus).output          # the chain's only miner
    assert out.startswith(f"sector 3: pre-committed at {look['epoch']}, seed at {look['epoch'] + 5}")
    assert zq("chain", "sector", "3", "--miner", "f01000", "--bus", bus).output == out
    r = zq("chain", "sector", "4", "--miner", "1000", "--bus", bus)
    assert r.exit_code == 1 and "miner f01000 has no sector 4" in r.output

    (m,) = json.loads(zq("chain", "miner", "--json", "--bus", bus).output)
    assert (m["actor_id"], m["precommits"], m["power"]) == (1000, 1, 0)
    assert json.loads(zq("chain", "miner", "--miner", "1000", "--json", "--bus", bus).output)["worker"] == "t0100"
    table = zq("chain", "miner", "--bus", bus).output.splitlines()
    assert table[0].split()[:3] == ["MINER", "WORKER", "SIZE"] and table[1].startswith("f01000")
    dl = json.loads(zq("chain", "deadline", "7", "--miner", "1000", "--json", "--bus", bus).output)
    assert dl["deadline"] == {"index": 7, "partitions": [], "posted": []}
    assert "no partitions" in zq("chain", "deadline", "--bus", bus).output

    rg = json.loads(zq("chain", "reorg", "--depth", "2", "--json", "--bus", bus).output)
    assert [t["epoch"] for t in rg["applied"]] == [t["epoch"] for t in reversed(rg["reverted"])]
    bad = zq("chain", "reorg", "--depth", "99", "--bus", bus)
    assert bad.exit_code == 1 and "invalid: reorg depth must be in 1..5" in bad.output
    missing = zq("chain", "miner", "--miner", "7", "--bus", bus)
    assert missing.exit_code == 1 and "not_found: no miner f07" in missing.output


def test_fund_adds_to_an_account_or_a_miner_and_the_miner_shows_its_funds(chain_bus):
    bus, _ = chain_bus
    wait_for_epoch(bus, 1)
    r = json.loads(zq("chain", "fund", "t0100", "2.5", "--json", "--bus", bus).output)
    assert (r["address"], r["balance"]) == ("t0100", 1002_500_000_000)         # nanoFIL
    assert zq("chain", "fund", "f01000", "1 FIL", "--bus", bus).output == "f01000: added 1 FIL, balance 101 FIL\n"
    for bad in ("0", "-1", "lots"):
        out = zq("chain", "fund", "t0100", bad, "--bus", bus)
        assert out.exit_code == 2 and "AMOUNT" in out.output
    (m,) = json.loads(zq("chain", "miner", "--json", "--bus", bus).output)
    assert (m["balance"], m["available"], m["vesting"], m["accounts"]) == (
        101 * 10 ** 9, 101 * 10 ** 9, 0, {"t0100": 1002_500_000_000})
    text = zq("chain", "miner", "--bus", bus).output
    assert ("f01000 funds: balance 101 FIL, available 101 FIL; locked: pre-commit deposits 0 FIL, "
            "initial pledge 0 FIL, vesting 0 FIL; fee debt 0 FIL; burnt 0 FIL") in text
    assert "f01000 senders: t0100 1002.5 FIL" in text
    assert "base fee " in zq("chain", "head", "--bus", bus).output
