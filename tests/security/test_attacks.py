"""An attacker holding allowed keys against a real cluster: every node its own process
over tcp with curve keys (tools/chaos.Cluster, as `zqnode devnet` provisions them), two
sectors sealed to Proving, then the attacks of issue 14, each by an allowed `worker`
key (registered as `evil-worker`) or an allowed `reader` key. After every attack every
node is still running, `zqnode bus ping` answers through the hub from each role, and no
sector changed state because of the attacker."""
import json
import os
import subprocess
import sys
import time

import msgspec
import psutil
import pytest
import trio

from zqnode.bus import keys
from zqnode.bus.codec import ErrorCode, RemoteError, encode_envelope, event_frames
from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer
from zqnode.bus.protocol import NodeDown, Tap
from zqnode.nodes.wire import chain as CW
from zqnode.nodes.chain.messages import TipsetSummary
from zqnode.nodes.wire.manager import CallReturn, CallStarted, MgrDo, MgrJobs
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.scheduler import RunningRequest, SchedGetDiag, SchedTaskDone, SchedWorkerBeat
from zqnode.nodes.wire import sealing as SW
from zqnode.nodes.wire import params as P
from zqnode.nodes.sector_dirs import sector_dir
from zqnode.nodes.wire.worker import WorkerFetch
from tests.procs import sealing_events, until
from tools.chaos import ROOT, Cluster

pytestmark = pytest.mark.slow
MINER = 1000
WORKER = "devnet-worker-1"
NESTED = b"\x91" * 1000 + b"\xc0"          # ~1 KB of nested arrays: msgspec's RecursionError


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("attacked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base / "home"))
        mp.delenv("ZQNODE_BUS_SECURITY", raising=False)
        mp.setenv("ZQNODE_TASK_HOLD", str(base / "hold"))     # tasks wait while hold-TASK exists
        (base / "hold").mkdir()
        c = Cluster(base, workers=1, epoch_seconds=1.0)
        c.small_disk = _mount_tmpfs(base / "worker-1", "64m")    # the worker's repo, for #6
        c.provision()
        keys.provision(base / "hub", [(str(base / "evil"), "worker", "evil-worker"),
                                      (str(base / "peek"), "reader", "")])
        try:
            c.start_all(timeout=60)
            c.pledge(2, timeout=60)
            until(lambda: set(c.sealing_states().values()) == {"Proving"}, 240, "2 sectors Proving")
            yield c
        finally:
            c.stop_all()
            if c.small_disk:
                subprocess.run(["umount", str(base / "worker-1")], check=False)


def _mount_tmpfs(path, size: str) -> bool:
    """A small file system of its own at `path` (a disk that can fill up); False where
    this machine does not let us mount one (not root)."""
    path.mkdir(parents=True)
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=10).returncode == 0
    except OSError:
        return False


def attack(c: Cluster, fn, *, reader: bool = False):
    """fn(peer) with the attacker's worker key (registered as evil-worker) or reader key
    (a client)."""
    async def main():
        cfg = BusConfig(address=c.bus, key_dir=str(c.base / ("peek" if reader else "evil")),
                        security="curve", call_timeout_s=10.0)
        peer = Peer(name="peek" if reader else "evil-worker", role="reader" if reader else "worker",
                    cfg=cfg, register=not reader)
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            out = await fn(peer)
            await trio.sleep(0.5)                    # what it sent has reached its targets
            nursery.cancel_scope.cancel()
        return out
    return trio.run(main)


def admin(c: Cluster, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "zqnode.nodes.cli", *args, "--bus", c.bus], cwd=ROOT,
                         env={**os.environ, "ZQNODE_KEY_DIR": str(c.client)}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def status(c: Cluster) -> dict:
    return json.loads(admin(c, "status", "--once", "--json"))


def assert_unharmed(c: Cluster, states: dict[int, str]) -> None:
    for node in c.nodes.values():
        assert node.proc.poll() is None, f"{node.name} exited; see {node.log}"
    for target in ("hub", "@chain", "@manager", "@scheduler", "@poster", WORKER):
        assert admin(c, "bus", "ping", target).startswith("pong from ")
    now = c.sealing_states()
    assert {n: now[n] for n in states} == states


def proving(c: Cluster) -> dict[int, str]:
    """The sectors Proving now (an earlier attack's sector may still be sealing)."""
    states = {n: s for n, s in c.sealing_states().items() if s == "Proving"}
    assert len(states) >= 2
    return states


def test_1_a_nested_message_stops_no_node(cluster):
    before = proving(cluster)

    async def as_reader(peer):
        for to in (b"hub", b"@manager", b"@chain", WORKER.encode()):
            await peer.link.send([to, NESTED])                       # the envelope itself
            await peer.link.send([to, encode_envelope("x", msgspec.Raw(NESTED), id=1)])

    async def as_worker(peer):
        for topic in (b"chain.head", b"node.down", b"sealing.sector"):
            await peer.link.publish([topic + b"\x00" + NESTED])
            await peer.link.publish([topic, NESTED])
            await peer.link.publish(event_frames(topic, encode_envelope("evil-worker", msgspec.Raw(NESTED),
                                                                        seq=1)))
        await peer.link.send([b"@manager", encode_envelope("evil-worker", msgspec.Raw(NESTED), id=2)])
    attack(cluster, as_reader, reader=True)
    attack(cluster, as_worker)
    assert_unharmed(cluster, before)


def test_2_forged_events_move_no_head_and_remove_no_worker(cluster):
    before = proving(cluster)
    head = status(cluster)["chain"]["epoch"]
    far = TipsetSummary(epoch=head + 1_000_000, key="forged", parent="x", timestamp=0.0,
                        ticket=b"t" * 32, beacon=b"b" * 32)
    forged = CW.ChainHeadChanged(reverted=[], applied=[far])

    async def as_worker(peer):
        await peer.publish("chain.head", forged)                     # under its own name
        await peer.link.publish(event_frames("chain.head", encode_envelope("devnet-chain", forged,
                                                                           seq=10 ** 6)))
        await peer.link.publish(event_frames("node.down", encode_envelope("hub", NodeDown(
            node_id=WORKER, role="worker", reason="left"), seq=10 ** 6)))
        # a stamp of its own making, after the topic: the hub's split keeps it in the topic
        await peer.link.publish(event_frames(b"chain.head\x00devnet-chain\x00chain",
                                             encode_envelope("evil-worker", forged, seq=10 ** 6)))
    attack(cluster, as_worker)
    time.sleep(2)
    snap = status(cluster)
    assert snap["sectors"]["head"] < head + 100 and snap["chain"]["epoch"] < head + 100
    assert [w["name"] for w in snap["workers"] if w["enabled"]] == [WORKER]
    assert_unharmed(cluster, before)


def test_3_a_worker_key_cannot_start_finish_or_claim_work_it_was_not_given(cluster):
    before = proving(cluster)
    hold = cluster.base / "hold" / "hold-PC1"
    hold.touch()
    try:
        admin(cluster, "sectors", "pledge")
        number = until(lambda: next((n for n, s in cluster.sealing_states().items() if s == "PreCommit1"),
                                    None), 120, "a third sector in PreCommit1")
        held = until(lambda: list((cluster.base / "hold").glob("started-PC1-*")), 120, "PC1 running")

        async def as_worker(peer):
            jobs = (await peer.call("@manager", MgrJobs())).jobs           # open to anyone
            (pc1,) = [j for j in jobs if j.task == "PC1"]
            outcomes = []
            with pytest.raises(RemoteError) as e:
                await peer.call("@manager", CallStarted(work_id=pc1.work_id, call_id="evil-1"))
            outcomes.append(e.value.message)
            ack = await peer.call("@manager", CallReturn(work_id=pc1.work_id, call_id=pc1.call_id,
                                                         ok=True, error=""), buffers=[b"forged"])
            outcomes.append(ack.outcome)
            outcomes.append((await peer.call("@scheduler", SchedTaskDone(request=pc1.work_id))).known)
            info = (await peer.call("@scheduler", SchedGetDiag())).diag.workers[0]
            claim = RunningRequest(request=pc1.work_id, task="PC1", sector=pc1.sector, sector_size=2048)
            await peer.call("@scheduler", SchedWorkerBeat(
                session=peer.session, info=msgspec.structs.replace(info, tasks=()), running=[claim]))
            diag = (await peer.call("@scheduler", SchedGetDiag())).diag
            runs = {w.worker: [r for r, _ in w.running] for w in diag.workers}
            return pc1, outcomes, runs
        pc1, outcomes, runs = attack(cluster, as_worker)
        assert pc1.worker == WORKER and held
        assert outcomes[0] == f"refuse: not assigned to evil-worker (the scheduler gave it to {WORKER})"
        assert outcomes[1:] == ["refused", False]
        assert runs[WORKER] == [pc1.work_id] and runs.get("evil-worker", []) == []
        assert cluster.sealing_states()[number] == "PreCommit1"
        assert_unharmed(cluster, before)
    finally:
        hold.unlink()
    until(lambda: cluster.sealing_states()[number] not in ("PreCommit1", "Packing"), 120, "PC1 done")
    events = sealing_events(cluster.base, number)      # the real worker's result, taken once
    assert events.count("PreCommit1Done") == 1 and "TaskFailed" not in events


def test_4_a_forged_reply_reaches_no_one(cluster):
    before = proving(cluster)
    numbers = sector_numbers(cluster)

    async def as_worker(peer):
        fake = SW.SealingSectors(sectors=[], head=0)
        for to in (b"devnet-manager", b"devnet-poster", b"devnet-scheduler", b"devnet-chain"):
            for rid in range(1, 200):
                await peer.link.send([to, encode_envelope("devnet-chain", fake, id=rid, reply=True)])
    attack(cluster, as_worker)
    assert sector_numbers(cluster) == numbers      # (#3's sector goes on sealing meanwhile)
    assert "a reply to 'devnet-manager' for a request it did not send" in \
        (cluster.base / "logs" / "devnet-hub.log").read_text()
    assert_unharmed(cluster, before)


def sector_numbers(c: Cluster) -> list:
    """The sectors `zqnode sectors list --json` shows."""
    return [s["number"] for s in json.loads(admin(c, "sectors", "list", "--json"))["sectors"]]


def test_5_a_fetch_of_any_length_costs_the_worker_no_memory(cluster):
    before = proving(cluster)
    worker = psutil.Process(cluster.nodes[WORKER].proc.pid)
    rss = worker.memory_info().rss

    async def as_worker(peer):
        with pytest.raises(RemoteError) as e:
            await peer.call(WORKER, WorkerFetch(sector=SectorRef(miner=MINER, number=1),
                                                file="sealed", offset=0, length=1 << 30))
        return e.value
    refusal = attack(cluster, as_worker)
    assert refusal.code == ErrorCode.INVALID and "length 0 to" in refusal.message
    assert worker.memory_info().rss < rss + (64 << 20)
    assert_unharmed(cluster, before)


def test_7_no_symlink_escapes_no_sealing_work_no_tap(cluster):
    before = proving(cluster)
    repo = cluster.devnet.worker_repos()[WORKER]
    link = sector_dir(repo, MINER, 1) / "passwd"
    link.symlink_to("/etc/passwd")

    async def as_worker(peer):
        out = []
        for call in (peer.call(WORKER, WorkerFetch(sector=SectorRef(miner=MINER, number=1),
                                                   file="passwd", offset=0, length=100)),
                     peer.call("@manager", MgrDo(task="AP", params=P.encode(P.APParams(
                         seal_proof=5, piece=b"x" * 100)), sector=SectorRef(miner=MINER, number=1),
                         sector_size=2048))):
            with pytest.raises(RemoteError) as e:
                await call
            out.append(e.value.code)
        return out

    async def as_reader(peer):
        with pytest.raises(RemoteError) as e:
            await peer.call("hub", Tap())
        return e.value.code
    try:
        assert attack(cluster, as_worker) == ["not_held", ErrorCode.PERMISSION]
        assert attack(cluster, as_reader, reader=True) == ErrorCode.PERMISSION
    finally:
        link.unlink()
    assert_unharmed(cluster, before)


def test_6_a_full_disk_stops_no_worker_and_shows_in_status(cluster):
    if not cluster.small_disk:
        pytest.skip("needs a small file system under the worker (mount -t tmpfs, as root)")
    before = proving(cluster)
    filler = cluster.base / "worker-1" / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 20))
                f.flush()
        except OSError:
            pass
    try:
        admin(cluster, "sectors", "pledge")
        problems = until(lambda: status(cluster)["problems"].get(WORKER), 120,
                         "the worker reports its full disk")
        assert "database or disk is full" in problems["store"]
        assert f"PROBLEM   {WORKER}: store: cannot write" in admin(cluster, "status", "--once")
        assert_unharmed(cluster, before)
    finally:
        filler.unlink()
    until(lambda: not status(cluster)["problems"].get(WORKER), 120, "the problem to clear")
    until(lambda: len(proving(cluster)) > len(before), 300, "the new sector to reach Proving")
