"""`zqnode proving ...` against a hub, a devnet chain (0.05 s epochs, FAKE verifier) and a
poster (fake prover, stand-in check) running in a thread over real ipc sockets."""
import json
import time

import pytest
from click.testing import CliRunner

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.cli import main
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.poster.checker import SectorChecker
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.node import PosterNode
from zqnode.nodes.poster.prover import FakeProver
from tests.threaded import trio_thread

MINER = 1000


def sealed(numbers) -> ChainDriver:
    d = ChainDriver(seed="cli")
    d.run_to(d.policy.seal_randomness_lookback)
    for n in numbers:
        d.send(MINER, d.precommit_params(MINER, n))
    d.step()
    d.run_to(max(d.chain.precommit(MINER, n).seed_epoch for n in numbers))
    for n in numbers:
        d.send(MINER, M.ProveCommitSectorParams(sector_number=n, proof=d.porep(MINER, n)))
    d.step()
    return d


def check(seal_proof, sector) -> str:
    return "replica unreadable" if sector.number == 2 else ""


class Locator:
    def locate(self, miner, number):
        return f"/srv/{number}"


@pytest.fixture(scope="module")
def poster_bus(tmp_path_factory):
    """Yields (bus address, the deadline holding sectors 1 and 2)."""
    tmp = tmp_path_factory.mktemp("proving")
    driver = sealed([1, 2])
    (index,) = {s.deadline for s in driver.chain.miner(MINER).sectors.values()}
    driver.run_to_open(MINER, index)           # then back off: the poster sees its Challenge come
    open_ = driver.chain.deadline(MINER).open
    driver = sealed([1, 2])
    driver.run_to(open_ - driver.policy.challenge_lookback - 2)

    async def start(n):
        addr = await n.start(ZmqHub(BusConfig(address=f"ipc://{tmp}/bus")).run)
        chain = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp / "chain"),
                                     bus=BusConfig(address=addr)),
                          ChainConfig(verifier="fake", epoch_seconds=0.05))
        chain.open()
        chain.chain = driver.chain
        await n.start(chain.run)
        poster = PosterNode(NodeIdentity(name="poster-1", repo=str(tmp / "poster"),
                                       bus=BusConfig(address=addr)),
                            PosterConfig(), prover=FakeProver(),
                            checker=SectorChecker(check, timeout_s=5), locator=Locator())
        await n.start(poster.run)
        return {"addr": addr}

    with trio_thread(start, "hub, chain and poster") as box:
        yield box["addr"], index


def zq(*args: str):
    return CliRunner().invoke(main, ["proving", *args], catch_exceptions=False)


def as_json(*args: str):
    out = zq(*args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_info_and_deadlines(poster_bus):
    bus, index = poster_bus
    info = as_json("info", "--bus", bus)
    assert (info["node"], info["network"], info["prover"]) == ("poster-1", "devnet", "fake")
    assert info["config"]["challenge_confirmations"] == 2
    (m,) = info["miners"]
    assert (m["actor_id"], m["sender"], m["seal_proof"]) == (MINER, "t0100", 5)
    text = zq("info", "--bus", bus).output
    assert text.startswith("poster poster-1 on devnet, head ") and "miner f01000 (posts from t0100)" in text
    dls = as_json("deadlines", "--bus", bus)
    assert len(dls["deadlines"]) == 48 and dls["miner"] == MINER
    used = [(d["index"], d["sectors"], d["partitions"]) for d in dls["deadlines"] if d["sectors"]]
    assert used == [(index, 2, 1)]
    assert all(d["close"] - d["open"] == 8 for d in dls["deadlines"])
    text = zq("deadlines", "--bus", bus).output.splitlines()
    assert text[1].split() == ["DL", "OPEN", "CLOSE", "PARTS", "SECTORS", "FAULTS", "RECOVER", "POSTED",
                               "RUNNER", "LAST"]
    assert len(text) == 50


def test_deadline_check_and_faults(poster_bus):
    bus, index = poster_bus
    d = as_json("deadline", str(index), "--bus", bus)
    assert d["chain"]["index"] == index and d["chain"]["partitions"][0]["sectors"] == [1, 2]
    assert d["info"]["close"] - d["info"]["open"] == 8
    text = zq("deadline", str(index), "--bus", bus).output
    assert f"deadline {index} of f01000: open [" in text and "partition 0 (" in text
    report = as_json("check", str(index), "--bus", bus)
    assert [(s["number"], s["partition"], s["ok"], s["reason"]) for s in report["sectors"]] == [
        (1, 0, True, ""), (2, 0, False, "replica unreadable")]
    text = zq("check", str(index), "--bus", bus).output.splitlines()
    assert text[0] == f"deadline {index} of f01000: 2 sectors checked, 1 failed"
    assert text[2].startswith("  partition 0 sector 2 (")
    assert text[2].endswith("): FAILED: replica unreadable")
    faults = as_json("faults", "--bus", bus)
    assert faults["miner"] == MINER and isinstance(faults["faults"], list)


def test_operator_mistakes_are_one_line_errors(poster_bus):
    bus, _ = poster_bus
    for args, message in ((["deadline", "48"], "deadline index 48 out of range 0..47"),
                          (["check", "--", "-1"], "deadline index -1 out of range 0..47"),
                          (["faults", "--miner", "7"], "this poster does not prove for f07")):
        out = CliRunner().invoke(main, ["proving", *args[:1], "--bus", bus, *args[1:]])
        assert out.exit_code != 0 and message in out.output and "Traceback" not in out.output


def test_the_poster_proves_while_the_cli_watches(poster_bus):
    bus, index = poster_bus
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = {d["index"]: d["last"] for d in as_json("deadlines", "--bus", bus)["deadlines"]}
        if last[index]:
            break
        time.sleep(0.2)
    assert last[index] == "proven"
    d = as_json("deadline", str(index), "--bus", bus)
    (outcome,) = d["outcomes"]
    assert (outcome["status"], outcome["landed"]) == ("proven", [0])
    assert outcome["skipped"] == [{"number": 2, "reason": "replica unreadable"}]
    assert [m["status"] for m in d["messages"]] == ["landed"]
    faults = as_json("faults", "--bus", bus)
    assert [(f["deadline"], f["sector"], f["state"], f["reason"]) for f in faults["faults"]] == [
        (index, 2, "faulty", "replica unreadable")]
    text = zq("faults", "--bus", bus).output.splitlines()
    assert text[1].split() == [str(index), "0", "2", "faulty", "replica", "unreadable"]
