"""`zqnode devnet` end to end, in a real process: four 2 KiB CC sectors are sealed by the
whole cluster (manager with the sealing state machine, scheduler, two workers running
each task in its own process, the chain with the real PoRep verifier, the poster),
while the test kills the process with SIGKILL five times, each time with sectors in
another state, and restarts it on the same repo. Every sector reaches Proving, each
PreCommit and ProveCommit is on chain exactly once and its proof verifies, and no
sector runs PreCommit1 to its end twice. Then a fifth sector is pledged from another
terminal and a reorg reverts its PreCommit: the sector still lands."""
import json
import pathlib
import random
import signal
import sqlite3
import time

import msgspec
import pytest
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.proofs import cid
from zqnode.proofs.porep import verify_seal
from tests.procs import Proc, devnet_chain, sealing_events, until, zqnode

MINER = 1000
EPOCH_S = "0.3"


@pytest.fixture(autouse=True)
def client_keys(tmp_path, monkeypatch):
    """The devnet makes this client key an admin; the CLI calls here use it (not $HOME)."""
    monkeypatch.setenv("ZQNODE_KEY_DIR", str(tmp_path / "client"))


def sectors(repo: pathlib.Path) -> dict[int, dict]:
    """The sealing store's sectors, read while the devnet runs (or after it died)."""
    path = repo / "manager" / "sealing.sqlite"
    if not path.exists():
        return {}
    db = sqlite3.connect(path, timeout=5)
    try:
        rows = db.execute("SELECT number, info FROM sectors").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {n: msgspec.msgpack.decode(info) for n, info in rows}


def reorg_past(bus: str, precommit_epoch: int, ticket_epoch: int) -> list[int]:
    """Revert the tipsets from `precommit_epoch` on (not the ticket's), at once: a client
    that stays connected, so the head cannot run past the chain's finality meanwhile."""
    async def go():
        peer = Peer(name="e2e-reorg", role="cli", register=False, cfg=BusConfig(address=bus))
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            api = BusChainAPI(peer)
            head = (await api.head()).epoch
            depth = head - precommit_epoch + 1
            assert head - depth >= ticket_epoch            # the ticket's tipset stays
            r = await api.reorg(depth)
            nursery.cancel_scope.cancel()
        return [t.epoch for t in r.reverted]
    return trio.run(go)


def pc1_calls(task_log: pathlib.Path) -> dict[int, set]:
    """Per sector, the (work id, call id) of every PreCommit1 that ran to its end. A call
    killed with its worker runs again under the same call id: still one call."""
    calls: dict[int, set] = {}
    for line in task_log.read_text().splitlines():
        rec = json.loads(line)
        if rec["task"] == "PC1" and rec["event"] == "end":
            calls.setdefault(rec["sector"], set()).add((rec["work_id"], rec["call_id"]))
    return calls


def pc1_starts(task_log: pathlib.Path) -> int:
    return sum(1 for line in task_log.read_text().splitlines()
               if json.loads(line)["task"] == "PC1" and json.loads(line)["event"] == "start")


# The states the kills aim at, in sealing order: each kill waits until some sector is in
# one of these, then a random moment more.
def devnet(repo: pathlib.Path, bus: str, task_log: pathlib.Path) -> Proc:
    return Proc("devnet", "--repo", str(repo), "--bus", bus, "--sectors", "4", "--epoch-seconds", EPOCH_S,
                "--refresh", "0.5", env={"ZQNODE_TASK_LOG": str(task_log)})


KILL_IN = [("PreCommit1", "PreCommit2"), ("PreCommitting", "PreCommitWait"),
           ("WaitSeed",), ("Committing", "SubmitCommit", "CommitWait"), ("FinalizeSector",)]


def test_devnet_seals_through_kill_9_and_a_reorg(tmp_path, free_bus_address):
    repo, bus, task_log = tmp_path / "devnet", free_bus_address(), tmp_path / "tasks.log"
    rng = random.Random(5)
    net = devnet(repo, bus, task_log)
    kills: list[dict[int, str]] = []
    try:
        net.wait_for(lambda line: line.startswith("devnet: pledged sectors 1, 2, 3, 4"))
        for wanted in KILL_IN:
            until(lambda: any(s["state"] in wanted for s in sectors(repo).values())
                         or all(s["state"] == "Proving" for s in sectors(repo).values()),
                         90, f"a sector in {wanted}")
            time.sleep(rng.uniform(0.0, 0.4))
            net.kill9()
            kills.append({n: s["state"] for n, s in sectors(repo).items()})
            net = devnet(repo, bus, task_log)
            net.wait_for(lambda line: line.startswith("devnet: resuming 4 sectors"))
        net.wait_for(lambda line: line.startswith("devnet: all 4 sectors are Proving"), timeout=120)
        killed_in = {st for k in kills for st in k.values()}
        print("killed with the sectors in:", kills)
        assert len(kills) == 5 and len(killed_in - {"Proving"}) >= 4, kills

        # another terminal: one more sector, and a reorg past its PreCommit
        out = zqnode("sectors", "pledge", "--bus", bus)
        assert out.stdout == "pledged sector 5\n", out.stderr
        until(lambda: sectors(repo).get(5, {}).get("state") == "WaitSeed", 60, "sector 5 in WaitSeed")
        s5 = sectors(repo)[5]
        reverted = reorg_past(bus, s5["precommit_epoch"], s5["ticket_epoch"])
        assert s5["precommit_epoch"] in reverted
        until(lambda: sectors(repo)[5]["state"] == "Proving", 90, "sector 5 Proving after the reorg")
        listing = json.loads(zqnode("sectors", "list", "--json", "--bus", bus).stdout)
        assert [(s["number"], s["state"]) for s in listing["sectors"]] == [(n, "Proving") for n in range(1, 6)]
    finally:
        net.stop(signal.SIGINT)
    assert net.p.returncode == 0

    log5 = sealing_events(repo, 5)
    assert "ChainPreCommitFailed" in log5 and log5[-1] == "Finalized"
    # one PreCommit1 call per sector ran to its end (one killed in the middle ran again)
    assert {n: len(c) for n, c in pc1_calls(task_log).items()} == {n: 1 for n in range(1, 6)}
    print("PreCommit1 processes started:", pc1_starts(task_log))
    # the chain: each sector pre-committed and proven once, and its proof verifies
    chain = devnet_chain(repo)
    landed: dict[str, list] = {"PreCommitSector": [], "ProveCommitSector": []}
    for ts in chain.tipsets:
        for msg, receipt in zip(ts.messages, ts.receipts):
            if receipt.exit_code == 0 and msg.method in landed:
                landed[msg.method].append((ts.epoch, M.decode_params(msg.method, msg.params)))
    assert sorted(p.sector_number for _, p in landed["PreCommitSector"]) == [1, 2, 3, 4, 5]
    assert sorted(p.sector_number for _, p in landed["ProveCommitSector"]) == [1, 2, 3, 4, 5]
    entropy = address_entropy(MINER)
    for epoch, p in landed["ProveCommitSector"]:
        sector = chain.miner(MINER).sectors[p.sector_number]
        (pre_epoch, pre), = [(e, q) for e, q in landed["PreCommitSector"]
                             if q.sector_number == p.sector_number]
        seed_epoch = pre_epoch + chain.policy.precommit_challenge_delay
        assert verify_seal(seal_proof=5, miner=MINER, sector=p.sector_number,
                           ticket=chain.randomness(DomainTag.SealRandomness, pre.seal_rand_epoch, entropy),
                           seed=chain.randomness(DomainTag.InteractiveSealChallengeSeed, seed_epoch, entropy),
                           comm_d=cid.parse_piece_cid(pre.unsealed_cid),
                           comm_r=sector.comm_r, proof=p.proof)
