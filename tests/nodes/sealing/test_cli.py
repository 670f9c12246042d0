"""`zqnode sectors ...` against a hub, a devnet chain (0.05 s epochs, FAKE verifier) and the
sealing service (fake tasks) running in a thread over real ipc sockets."""
import json
import time

import pytest
from click.testing import CliRunner

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.chain.verifiers import FAKE
from zqnode.nodes.cli import main
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.node import SealingService
from tests.nodes.sealing.stand_ins import LocalTasks
from zqnode.proofs import cid, commp
from tests.threaded import trio_thread


@pytest.fixture(scope="module")
def sealing_bus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sectors")

    async def start(n):
        box = {}
        addr = await n.start(ZmqHub(BusConfig(address=f"ipc://{tmp}/bus")).run)
        chain = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp / "chain"),
                                     bus=BusConfig(address=addr)),
                          ChainConfig(verifier="fake", epoch_seconds=0.05))
        await n.start(chain.run)
        tasks = LocalTasks(tmp / "tasks")
        tasks.fail("PC1", *["no space left"] * 9)       # sector 2 will pause
        svc = SealingService(tmp / "manager", SealingConfig(retry_base_s=0.01, retry_max_s=0.02,
                                                            max_retries=2, wait_deals_s=0.2),
                             Peer(name="manager-1", role="manager", cfg=BusConfig(address=addr)), tasks,
                             own_peer=True, verify_seal=FAKE.verify_seal)
        await n.start(svc.run)
        box["addr"], box["svc"], box["tasks"] = addr, svc, tasks
        return box

    with trio_thread(start, "hub, chain and sealing") as box:
        yield box


def zq(*args: str):
    return CliRunner().invoke(main, ["sectors", *args], catch_exceptions=False)


def as_json(*args: str):
    out = zq(*args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def wait_for(bus, pred, seconds=30):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        listing = as_json("list", "--bus", bus)
        if pred(listing["sectors"]):
            return listing["sectors"]
        time.sleep(0.1)
    raise AssertionError(f"not reached: {listing}")


def test_pledge_list_status_resume_add_piece_remove(sealing_bus, tmp_path):
    bus = sealing_bus["addr"]
    assert zq("pledge", "--bus", bus).output == "pledged sector 1\n"
    # sector 1 takes the PC1 failures: 3 errors in a row, then it pauses
    sectors = wait_for(bus, lambda ss: ss[0]["paused"])
    assert (sectors[0]["state"], sectors[0]["last_error"], sectors[0]["retries"]) == (
        "SealPreCommit1Failed", "no space left", 3)
    text = zq("list", "--bus", bus).output.splitlines()
    assert text[0].split() == ["SECTOR", "STATE", "KIND", "PIECES", "TICKET", "PRECOMMIT", "SEED",
                               "COMMIT", "RETRIES", "ERROR"]
    assert text[1].split()[:3] == ["1", "SealPreCommit1Failed", "(paused)"]
    assert text[1].endswith(" 3 no space left") and text[2].startswith("1 sectors; chain head ")

    sealing_bus["tasks"].failures.clear()
    assert zq("resume", "1", "--bus", bus).output == "sector 1: PreCommit1\n"
    wait_for(bus, lambda ss: ss[0]["state"] == "Proving")
    status = as_json("status", "1", "--log", "--bus", bus)
    assert status["info"]["state"] == "Proving" and status["info"]["commit_epoch"] > 0
    assert [e["event"] for e in status["log"]].count("TaskFailed") == 3
    text = zq("status", "1", "--log", "--bus", bus).output.splitlines()
    assert text[0] == "sector 1 (cc, cause s-1000-1): Proving"
    assert any(line.endswith("(paused after 3 errors in a row: no space left)") for line in text)
    assert any("Resume" in line for line in text)

    piece = tmp_path / "piece.bin"
    piece.write_bytes(bytes(range(256)) * 2)
    want = commp.commp(piece.read_bytes())
    out = zq("add-piece", str(piece), "--bus", bus).output
    assert out == f"piece {cid.piece_cid_v1(want.commitment)} (512 bytes, 1024 padded) -> sector 2 at offset 0\n"
    wait_for(bus, lambda ss: len(ss) == 2 and ss[1]["state"] == "Proving")
    info = as_json("status", "2", "--bus", bus)["info"]
    assert [(p["offset"], p["padded_size"], p["path"] != "") for p in info["pieces"]] == [
        (0, 1024, True), (1024, 1024, False)]

    assert zq("remove", "2", "--bus", bus).output == "sector 2: Removing\n"
    wait_for(bus, lambda ss: ss[1]["state"] == "Removed")
    assert [s["number"] for s in as_json("list", "--states", "Proving", "--bus", bus)["sectors"]] == [1]


def test_operator_mistakes_are_one_line_errors(sealing_bus):
    bus = sealing_bus["addr"]
    for args, message in ((["status", "99"], "no sector 99"),
                          (["resume", "1", "--state", "Sealed"], "no state 'Sealed'"),
                          (["list", "--states", "Nope"], "no state Nope")):
        out = CliRunner().invoke(main, ["sectors", *args, "--bus", bus])
        assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output
