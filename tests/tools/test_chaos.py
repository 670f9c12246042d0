"""tools/chaos.py: a short chaos run over real processes, and each invariant's checker on
crafted stores (a double PreCommit, a recomputed result, a missed deadline, a corrupted
database), each named in the violation."""
import json
import os
import pathlib
import select
import socket
import sqlite3
import subprocess
import sys
import threading

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import MinerSpec
from zqnode.nodes.chain.store import ChainStore
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.config import load
from zqnode.nodes.devnet import Devnet
from zqnode.nodes.sealing.sector import LogEntry, SectorInfo
from zqnode.nodes.sealing.store import SealingStore
from zqnode.nodes.worker.store import CallStore
from tools import chaos, chaos_checks as checks
from tools.chaos_net import Link

ROOT = pathlib.Path(__file__).resolve().parents[2]
MINER = 1000
T0 = 1_000_000.0                       # tipset timestamps: T0 + epoch (1 s epochs)


# -- crafted stores -------------------------------------------------------------------------

def sealed_chain(sectors=(1, 2)) -> ChainDriver:
    d = ChainDriver(miners=[MinerSpec(actor_id=MINER, seal_proof=5)])
    for n in sectors:
        d.seal(MINER, n)
    return d


def write_chain(path: pathlib.Path, d: ChainDriver, tipsets=None) -> None:
    """The chain as the chain node stores it: genesis, every tipset, the head's state (rows
    written by hand: a crafted history may be one the chain would never produce)."""
    store = ChainStore(path)
    enc = msgspec.msgpack.encode
    with store.transaction():
        store.db.execute("INSERT INTO meta VALUES ('genesis', ?)", (enc(d.chain.genesis),))
        for ts in tipsets or d.chain.tipsets:
            ts = msgspec.structs.replace(ts, timestamp=T0 + ts.epoch)
            store.db.execute("INSERT INTO tipsets VALUES (?, ?)", (ts.epoch, enc(ts)))
        store.db.execute("INSERT INTO states VALUES (?, ?)", (d.epoch, d.chain.state_blob(d.epoch)))
    store.close()


def write_sealing(path: pathlib.Path, states: dict[int, str]) -> None:
    """Sectors in `states`; the sealed ones logged as finalized once."""
    store = SealingStore(path)
    for n, state in states.items():
        info = SectorInfo(miner=MINER, number=n, seal_proof=5, sector_size=2048, kind="cc", state=state)
        log = [LogEntry(ts=1.0, step=1, event="Finalized", data={}, prev="FinalizeSector",
                        state="Proving")] if state in checks.SEALED else []
        store.save([(info, log, max(states) + 1)])
    store.close()


def test_sectors_on_chain_once_pass(tmp_path):
    write_chain(tmp_path / "chain.sqlite", sealed_chain())
    write_sealing(tmp_path / "sealing.sqlite", {1: "Proving", 2: "FaultReported"})
    violations, info = checks.check_sectors(tmp_path / "chain.sqlite", tmp_path / "sealing.sqlite",
                                            [1, 2], MINER)
    assert violations == [] and info["proving"] == 1 and info["faulty_now"] == 1


def test_a_double_precommit_and_a_missing_sector_are_named(tmp_path):
    d = sealed_chain()
    tipsets = list(d.chain.tipsets)
    (e, pre), = [(i, ts) for i, ts in enumerate(tipsets) for m in ts.messages
                 if m.method == "PreCommitSector" and M.decode_params(m.method, m.params).sector_number == 1]
    msg = next(m for m in pre.messages if m.method == "PreCommitSector"
               and M.decode_params(m.method, m.params).sector_number == 1)
    last = tipsets[-1]               # a fake: the same PreCommit landing again, exit code 0
    tipsets[-1] = msgspec.structs.replace(last, messages=[*last.messages, msg],
                                          receipts=[*last.receipts, M.Receipt(exit_code=0)])
    write_chain(tmp_path / "chain.sqlite", d, tipsets)
    write_sealing(tmp_path / "sealing.sqlite", {1: "Proving", 2: "Proving", 3: "PreCommit1"})
    violations, _ = checks.check_sectors(tmp_path / "chain.sqlite", tmp_path / "sealing.sqlite",
                                         [1, 2, 3], MINER)
    assert [v.detail for v in violations] == [
        "sector 1: PreCommitSector landed 2 times on chain (want exactly once)",
        "sector 3: PreCommitSector landed 0 times on chain (want exactly once)",
        "sector 3: ProveCommitSector landed 0 times on chain (want exactly once)",
        "sector 3 reached Proving 0 times (want once) and is PreCommit1 in the sealing store",
    ]
    assert {v.invariant for v in violations} == {"sectors_proving_once"}


# -- results_once ---------------------------------------------------------------------------

def task(event, call, work="w1", task_type="PC1", sector=1, worker="devnet-worker-1", ts=0.0):
    return json.dumps({"event": event, "task": task_type, "work_id": work, "call_id": call,
                       "worker": worker, "pid": 1, "sector": sector, "ts": ts})


def write_calls(path: pathlib.Path, rows: list[tuple]) -> None:
    """rows: (call_id, work_id, state, runs, ok, returned)."""
    store = CallStore(path)
    with store.transaction():
        store.db.executemany("INSERT INTO calls VALUES (?, ?, 'PC1', 1000, 1, 2048, x'', '[]', ?, ?, ?, "
                             "x'', '', ?, 1, 0, 0)", rows)
    store.close()


def test_a_call_run_again_after_a_kill_is_one_computation(tmp_path):
    # call a ran to its end, its worker died before storing it, and it ran again
    (tmp_path / "tasks.log").write_text("\n".join([task("start", "a"), task("end", "a"), task("start", "a"),
                                                   task("end", "a"), task("start", "b", work="w2")]) + "\n")
    write_calls(tmp_path / "calls.sqlite", [("a", "w1", "done", 2, 1, 1), ("b", "w2", "running", 1, None, 0)])
    violations, info = checks.check_results(tmp_path / "tasks.log", {"devnet-worker-1": tmp_path / "calls.sqlite"})
    assert violations == []
    assert info == {"task_starts": 3, "task_ends": 2, "works": 2, "calls_in_stores": 2}


def test_a_result_computed_again_or_lost_is_named(tmp_path):
    (tmp_path / "tasks.log").write_text("\n".join([
        task("start", "a"), task("end", "a"),
        task("start", "b", worker="devnet-worker-2"), task("end", "b", worker="devnet-worker-2"),
        task("start", "c", work="w2", sector=2)]) + "\n")
    write_calls(tmp_path / "calls.sqlite", [("a", "w1", "done", 1, 1, 1), ("c", "w2", "done", 0, 1, 0)])
    violations, _ = checks.check_results(tmp_path / "tasks.log", {"devnet-worker-1": tmp_path / "calls.sqlite"})
    assert [v.detail for v in violations] == [
        "PC1 of sector 1 (work w1) started again by call b on devnet-worker-2 after call a had computed it",
        "call c (PC1 of sector 1) on devnet-worker-1 started 1 times but its store counts 0 runs",
        "the result of call c (PC1 of sector 1) on devnet-worker-1 was stored but never acknowledged "
        "by the manager",
    ]


# -- work: re-runs and wasted task time -------------------------------------------------------

def test_work_counts_reruns_and_the_task_time_they_wasted(tmp_path):
    pc2 = dict(task_type="PC2", work="w2")
    (tmp_path / "tasks.log").write_text("\n".join([
        task("start", "a", ts=10), task("start", "b", **pc2, ts=11),       # worker 1 killed at 15
        task("start", "a", ts=20), task("end", "a", ts=30),                # a's run again: a result
        task("start", "b", **pc2, ts=21), task("kill", "b", **pc2, ts=24),  # b aborted
        task("start", "c", **pc2, ts=25), task("fail", "c", **pc2, ts=27),  # c failed
        task("start", "d", **pc2, ts=28), task("end", "d", **pc2, ts=40),
    ]) + "\n")
    up = {"devnet-worker-1": [(0.0, 15.0), (18.0, 50.0)]}
    assert checks.work(tmp_path / "tasks.log", up) == {
        "task_runs": 6, "reruns": 4, "wasted_task_s": 14.0,
        "wasted_by_why": {"crashed": 9.0, "failed": 2.0, "killed": 3.0},
        "per_task": {"PC1": {"runs": 2, "results": 1, "wasted_s": 5.0},
                     "PC2": {"runs": 4, "results": 1, "wasted_s": 9.0}}}


# -- deadlines_made -------------------------------------------------------------------------

def proven_then_missed() -> tuple[ChainDriver, int, list[tuple[int, int]]]:
    """Sectors 1 and 2 in one deadline: its first occurrence proven, the next missed, the
    one after that closes with the sectors still faulty (no recovery declared)."""
    d = sealed_chain()
    index = next(i for i, dl in enumerate(d.chain.miner(MINER).deadlines) if dl.partitions)
    d.run_to_open(MINER, index)
    first = d.chain.deadline(MINER)
    r = d.receipt_after(d.send(MINER, d.post_params(MINER, [0])))
    assert r.exit_code == 0, r.error
    pp = d.policy.proving_period
    d.run_to(first.close + 2 * pp)                    # two more occurrences closed unproven
    return d, index, [(first.open + k * pp, first.close + k * pp) for k in range(3)]


def test_a_missed_deadline_counts_only_when_the_poster_could_have_made_it(tmp_path):
    d, index, windows = proven_then_missed()
    write_chain(tmp_path / "chain.sqlite", d)
    outcomes = checks.deadline_outcomes(*checks.read_tipsets(tmp_path / "chain.sqlite"), MINER)
    assert [(o.index, o.open, o.close, o.status) for o in outcomes] == [
        (index, *windows[0], "proven"), (index, *windows[1], "missed"), (index, *windows[2], "faulty")]

    always = {n: [(0.0, T0 + 10_000)] for n in chaos.POST_NEEDS}
    violations, info = checks.check_deadlines(tmp_path / "chain.sqlite", always, MINER, 10.0, chaos.POST_NEEDS)
    assert [v.detail for v in violations] == [
        f"deadline {index} [{windows[1][0]},{windows[1][1]}) missed: partitions [0] not proven while "
        f"devnet-hub, devnet-chain, devnet-poster were up"]
    assert info == {"occurrences": 3, "qualifying": 2, "faulty (excused)": 1, "missed": 1, "proven": 1}

    # the poster (re)started 5 s before the second occurrence's sectors were checked (at the
    # Open of the deadline two before it): too late to count
    checked = windows[1][0] - 2 * d.policy.challenge_window
    restarted = {**always, "devnet-poster": [(0.0, T0 + windows[0][1]), (T0 + checked - 5, T0 + 10_000)]}
    violations, info = checks.check_deadlines(tmp_path / "chain.sqlite", restarted, MINER, 10.0, chaos.POST_NEEDS)
    assert violations == [] and info["missed (excused)"] == 1 and info["qualifying"] == 1

    # a reorg that replaced epochs of the occurrence (its proof may land too late) excuses it
    reorg = [windows[1][1] - 3, windows[1][1] - 2]
    violations, info = checks.check_deadlines(tmp_path / "chain.sqlite", always, MINER, 10.0,
                                              chaos.POST_NEEDS, [reorg])
    assert violations == [] and info["missed (excused)"] == 1
    before = [windows[0][0] - 2 * d.policy.challenge_window - 2] * 2    # long before: no excuse
    violations, _ = checks.check_deadlines(tmp_path / "chain.sqlite", always, MINER, 10.0,
                                           chaos.POST_NEEDS, [before])
    assert len(violations) == 1


# -- databases_intact -----------------------------------------------------------------------

def test_a_corrupted_database_is_named(tmp_path):
    good, bad = tmp_path / "good.sqlite", tmp_path / "bad.sqlite"
    for path in (good, bad):
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 200) for i in range(500)])
        db.commit()
        db.close()
    with open(bad, "r+b") as f:                 # scribble over an index page
        f.seek(4096 + 8)
        f.write(b"\xff" * 64)
    violations, info = checks.check_databases([good, bad])
    assert info == {"databases": 2} and len(violations) == 1
    assert violations[0].invariant == "databases_intact" and violations[0].detail.startswith(f"{bad}: ")


# -- the harness ----------------------------------------------------------------------------

def test_a_node_is_reachable_while_up_and_its_link_is_whole(tmp_path):
    node = chaos.Node("w", "worker", tmp_path / "c", tmp_path / "l", {}, "tcp://x:1")
    node.up, node.faults = [(0.0, 10.0), (20.0, 30.0)], [(5.0, 6.0), (25.0, 40.0)]
    assert node.reachable() == [(0.0, 5.0), (6.0, 10.0), (20.0, 25.0)]


def test_a_link_forwards_holds_and_cuts(tmp_path):
    echo = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(99), b"")],
                             daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    link = Link(echo.getsockname()[1])
    c = socket.create_connection(("127.0.0.1", link.port), timeout=10)
    c.sendall(b"one")
    assert c.recv(99) == b"one"
    link.delay(60.0)                                 # held: nothing comes back ...
    c.sendall(b"two")
    assert select.select([c], [], [], 0.3)[0] == []
    link.delay(0.0)                                  # ... until the hold ends: late, not lost
    assert c.recv(99) == b"two"
    link.cut(60.0)                                   # cut: the connection ends, new ones too
    assert c.recv(99) == b""
    again = socket.create_connection(("127.0.0.1", link.port), timeout=10)
    assert again.recv(99) == b""
    link.cut(0.0)
    third = socket.create_connection(("127.0.0.1", link.port), timeout=10)
    third.sendall(b"three")
    assert third.recv(99) == b"three"
    link.close()
    echo.close()


def test_config_files_load_back_as_the_devnet_configs(tmp_path):
    net = Devnet(base=tmp_path, bus="tcp://127.0.0.1:7700", workers=2)
    net.address = "tcp://127.0.0.1:7799"
    for cfg in net.node_configs().values():
        path = tmp_path / f"{cfg.name}.toml"
        path.write_text(chaos.config_toml(cfg))
        assert load(str(path), role=cfg.role) == cfg, cfg.name


def test_a_short_chaos_run_keeps_every_invariant(tmp_path):
    out = subprocess.run(
        [sys.executable, "tools/chaos.py", "--duration", "25", "--sectors", "3", "--workers", "2",
         "--gap", "1", "3", "--down", "0.5", "2", "--seed", "3", "--pause-hub", "--json",
         "--repo", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["ok"] and report["violations"] == [] and report["settled"]
    inv = report["invariants"]
    assert set(inv) == set(checks.INVARIANTS) and all(i["ok"] for i in inv.values())
    assert inv["sectors_proving_once"]["proving"] == report["sectors"] == 3
    assert inv["results_once"]["task_ends"] >= 4 * report["sectors"]   # PC1, PC2, C1, FIN each
    work = report["work"]
    assert work["task_runs"] == inv["results_once"]["task_starts"]
    assert sum(t["results"] for t in work["per_task"].values()) == inv["results_once"]["task_ends"]
    assert inv["deadlines_made"]["qualifying"] >= 1 and inv["deadlines_made"].get("proven", 0) >= 1
    assert inv["databases_intact"]["databases"] == 6     # chain, sealing, manager, poster, 2 x calls
    kinds = [a["kind"] for a in report["actions"]]
    assert kinds.count("kill") == report["kills"] and sum(report["killed"].values()) == report["kills"]
    assert report["kills"] + report["hub_pauses"] + report["reorgs"] + report["link_faults"] >= 5
    assert "reorg" in kinds[:3] and report["reorgs"] >= 1       # seed 3 reorgs early
