"""The chain-watcher in real processes: docs/chain.md's (a devnet chain serving the Lotus
API on one bus, `zqnode start --role chain --lotus URL --lotus-token FILE` following it on
another, the chain commands asking the watcher, a reorg going through to the devnet), and the devnet end to end through it
(`zqnode devnet --via-lotus`: sealing, WindowPoSt over two periods, a reorg past a
Challenge, the watcher's websocket cut)."""
import json
import signal
import socket
import sqlite3
import threading
import time
import uuid

import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.lotus.devnet_api import block_cid
from zqnode.nodes.chain.lotus.follow import tipset_key
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.wire import chain as W
from zqnode.proofs import post
from tests.post_windows import (
    EPOCH_S, LEAD, MINER, P, POSTER_SETTINGS, WINDOW, Occurrence, first_after, on_chain, read_layout,
    reorg_after_proofs, wait_epoch, zqnode_json)
from tests.procs import Proc, devnet_chain, until, zqnode
from tools.chaos_net import Link


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
        api = ("--lotus", f"ws://127.0.0.1:{port}/rpc/v1", "--miner", "f01000")   # no cluster: the API alone
        out = zqnode("proving", "deadline", "0", *api)
        assert out.returncode == 0 and out.stdout.startswith("deadline 0 of f01000"), out.stderr
        out = zqnode("proving", "faults", *api)
        assert out.returncode == 0 and "no faulty sectors" in out.stdout, out.stderr
        out = zqnode("chain", "reorg", "--depth", "1", "--bus", watcher_bus, "--json")   # to the devnet
        assert out.returncode == 0, out.stderr
        reverted = json.loads(out.stdout)["reverted"]
        assert len(reverted) == 1 and reverted[0]["key"].startswith("bafy2bzace")
    finally:
        for p in reversed(procs):
            p.stop()


class HeadRecorder:
    """Every head change the cluster's bus carries, from one subscriber for the whole run:
    (wall time, events missed before it, reverted, applied)."""

    def __init__(self, bus: str):
        self.bus = bus
        self.events: list[tuple[float, int, list, list]] = []
        self._ready, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._run,), daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the head recorder did not subscribe"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        peer = Peer(name=f"heads-{uuid.uuid4().hex[:8]}", role="cli", register=False,
                    cfg=BusConfig(address=self.bus))
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            with peer.subscribe(W.TOPIC_HEAD, kinds=[W.ChainHeadChanged], roles=["chain"]) as sub:
                self._ready.set()
                nursery.start_soon(self._until_stopped, nursery.cancel_scope)
                async for ev in sub:
                    missed = ev.gap or int(ev.reset)
                    self.events.append((time.monotonic(), missed, ev.body.reverted, ev.body.applied))

    async def _until_stopped(self, scope: trio.CancelScope) -> None:
        while not self._stop.is_set():
            await trio.sleep(0.1)
        scope.cancel()

    def chain(self) -> list:
        """The chain the changes build, each one checked to continue the one before."""
        chain: list = []
        for i, (_, missed, reverted, applied) in enumerate(self.events):
            assert i == 0 or not missed, f"head change {i}: {missed} events missed before it"
            for t in reverted:
                assert chain and chain[-1].key == t.key, f"head change {i} reverts {t.epoch}, not the head"
                chain.pop()
            for t in applied:
                assert not chain or chain[-1].key == t.parent, \
                    f"head change {i} applies {t.epoch} on top of {chain[-1].epoch}: lost or doubled"
                chain.append(t)
        return chain


SECTORS = 2
CUT_EPOCHS = 24          # the cut, the watcher's reconnect (1 s) and its resync, with room


def test_the_devnet_through_the_lotus_api_two_periods_a_reorg_and_a_cut_websocket(
        tmp_path, free_bus_address, monkeypatch):
    """`zqnode devnet --via-lotus --no-poster`: the cluster's chain role is the chain-watcher
    following the devnet's chain over the Lotus API, through a relay the test cuts; the
    poster runs as its own node. Two sectors are sealed to Proving; each deadline holding
    them is proven in two periods, every proof verified by the chain and again here; a
    reorg past a Challenge the poster had proven changes the randomness and the window is
    proven again; the watcher's websocket is cut mid-run and the head changes on the bus
    still make one unbroken chain, the devnet's. Every message went out through
    MpoolPushMessage. `zqnode proving deadlines --lotus URL` reads the miner from the API
    alone as the poster shows it."""
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")
    bus, repo = free_bus_address(), tmp_path / "devnet"
    port = _free_port()
    link = Link(port)                  # between the chain-watcher and the devnet's Lotus API
    net = Proc("devnet", "--bus", bus, "--repo", str(repo), "--sectors", str(SECTORS), "--workers", "2",
               "--epoch-seconds", str(EPOCH_S), "--refresh", "1", "--no-poster", "--via-lotus",
               "--lotus-listen", f"127.0.0.1:{port}", "--lotus", f"ws://127.0.0.1:{link.port}/rpc/v1")
    procs, heads = [net], HeadRecorder(bus)
    try:
        line = net.wait_for(lambda line: line.startswith("devnet: no poster here; start it with: "))
        (repo / "poster.toml").write_text((repo / "poster.toml").read_text() + POSTER_SETTINGS)
        procs.append(Proc(*line.split("start it with: zqnode ", 1)[1].split()))
        procs[-1].wait_for(lambda line: line.startswith("poster devnet-poster running on"))
        heads.start()
        net.wait_for(lambda line: line.startswith(f"devnet: all {SECTORS} sectors are Proving"), timeout=240)

        layout, activation, offset, ready = on_chain(bus, read_layout)
        first = [first_after(offset, i, min(activation[n] for p in parts for n in p))
                 for i, parts in layout.items()]
        soon = sorted(next(o.later(k) for k in range(3) if o.later(k).challenge >= ready + LEAD)
                      for o in first)
        windows = sorted([*soon, *(o.later() for o in soon)])       # every deadline, two periods
        # a reorg window whose previous deadline is empty: the reorg reverts no other PoSt
        reorg = next(w for w in windows if (w.index - 1) % P.period_deadlines not in layout)
        busy = [(w.challenge - LEAD, w.close + 2) for w in windows]
        cut_at = next(e for e in range(reorg.close + 2, windows[-1].challenge)
                      if all(e + CUT_EPOCHS < a or e > b for a, b in busy))
        print(f"ready at {ready}; deadlines {layout}; windows {windows}; reorg {reorg}; cut at {cut_at}")

        reorged = reorg_after_proofs(bus, repo, reorg)
        assert reorg.challenge in reorged["reverted"] and reorged["after"] != reorged["before"], reorged
        assert reorged["proven_before"] and not reorged["pushed_before"], reorged

        wait_epoch(bus, cut_at)
        accepted, cut_time = link.counts["accepted"], time.monotonic()
        link.cut(0.0)                  # the websocket drops; the watcher connects again
        until(lambda: zqnode("chain", "head", "--bus", bus).returncode == 0, 30,
              "the watcher answering again")          # meanwhile: busy, "not connected"
        wait_epoch(bus, windows[-1].close + P.chain_finality)
        assert link.counts["accepted"] > accepted, link.counts

        info = zqnode_json("proving", "info", "--bus", bus)["miners"][0]
        assert (info["missed"], info["unconfirmed"]) == (0, 0), info
        m = zqnode_json("chain", "miner", "--miner", str(MINER), "--bus", bus)
        assert (m["active"], m["faulty"], m["power"]) == (SECTORS, 0, SECTORS * 2048), m
        # the same miner read straight from the Lotus API, no cluster: as the poster shows it
        api = ("--lotus", f"ws://127.0.0.1:{port}/rpc/v1", "--miner", f"f0{MINER}")
        shape = lambda rows: [(d["index"], d["partitions"], d["sectors"], d["faults"]) for d in rows]  # noqa: E731
        direct = zqnode_json("proving", "deadlines", *api)["deadlines"]
        assert shape(direct) == shape(zqnode_json("proving", "deadlines", "--bus", bus)["deadlines"])
        assert sum(d["sectors"] for d in direct) == SECTORS
        out = zqnode("chain", "miner", *api)
        assert out.returncode == 0 and f"f0{MINER}" in out.stdout and " - " in out.stdout, out.stdout
    finally:
        heads.stop()
        for proc in reversed(procs):
            proc.stop(signal.SIGINT)
        link.close()
    assert net.p.returncode == 0, net.stderr()

    chain = devnet_chain(repo)
    # -- the head changes: one unbroken chain, the devnet's, the cut bridged by one resync
    followed = heads.chain()
    assert followed[-1].epoch >= windows[-1].close
    for t in followed:
        if t.epoch <= chain.head.epoch:
            assert t.key == tipset_key([block_cid(chain.tipset(t.epoch).key)]), f"epoch {t.epoch}"
    resync = max(len(applied) for at, _, _, applied in heads.events if at > cut_time)
    assert resync >= 2, "the cut bridged by a change of several tipsets"
    # -- every window proven once, by proofs that verify against the chain's randomness
    posts = {}
    for ts in chain.tipsets:
        for msg, receipt in zip(ts.messages, ts.receipts):
            if msg.method == "SubmitWindowedPoSt":
                params = M.decode_params(msg.method, msg.params)
                window = Occurrence(ts.epoch - (ts.epoch - offset) % WINDOW, params.deadline)
                assert receipt.exit_code == 0 and window not in posts, (window, receipt)
                assert msg.sender == "t0101", msg
                posts[window] = params
    assert [w for w in sorted(posts) if w.close <= windows[-1].close and w >= windows[0]] == windows
    entropy = address_entropy(MINER)
    for window in windows:
        randomness = post.canonical_randomness(chain.randomness(
            DomainTag.WindowedPoStChallengeSeed, window.challenge, entropy))
        for pp, proof in zip(posts[window].partitions, posts[window].proofs):
            sectors = [n for n in layout[window.index][pp.index] if activation[n] < window.open]
            assert post.verify_window_post(seal_proof=5, randomness=randomness, proof=proof,
                                           sectors=[(n, chain.miner(MINER).sectors[n].comm_r) for n in sectors])
    with sqlite3.connect(repo / "chain" / "watcher.sqlite") as db:
        methods = {m for (m,) in db.execute("SELECT method FROM sent")}
    assert {"PreCommitSector", "ProveCommitSector", "SubmitWindowedPoSt"} <= methods
