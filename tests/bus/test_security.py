"""Curve security end to end in one process: the handshake, the allow-list, hub-stamped
identities and roles, per-kind permissions, replays and per-sender limits.

`Manager` below stands in for the manager role (being built elsewhere): a Peer with
several handlers and the permission table a manager would declare.
"""
import itertools
import logging
import os
import stat
from collections import deque

import msgspec
import pytest
import trio
import zmq
from zmq.utils import z85

from zqnode.bus import keys
from zqnode.bus.codec import ErrorCode, Msg, RemoteError, decode_envelope, encode_envelope, event_frames
from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import CallTimeout, HandshakeRefused, Peer, open_link
from zqnode.bus.permissions import ADMIN, ANYONE, NODES
from zqnode.bus.protocol import HUB, ListNodes, NodeDown, Ping, Pong, Register, Tap


class SecAbortJob(Msg):
    job: str


class SecResumeSector(Msg):
    sector: int


class SecSetConfig(Msg):
    key: str
    value: str


class SecReportResult(Msg):
    job: str
    ok: bool


class SecReportStatus(Msg):
    text: str


class SecSectorInfo(Msg):
    sector: int


class SecDone(Msg):
    who: str
    role: str


MANAGER_PERMISSIONS = {SecAbortJob: ADMIN, SecResumeSector: ADMIN, SecSetConfig: ADMIN,
                       SecReportResult: "worker", SecReportStatus: NODES, SecSectorInfo: ANYONE}


class Manager:
    """A manager-like node: several handlers, the table above, a log of what ran."""

    def __init__(self, cfg: BusConfig, name: str = "manager-1"):
        self.ran: list[tuple[str, str, str]] = []          # (kind, sender, role)
        self.gate: trio.Event | None = None
        self.peer = Peer(name=name, role="manager", cfg=cfg, permissions=MANAGER_PERMISSIONS)
        for kind in MANAGER_PERMISSIONS:
            self.peer.on(kind, self.handle)

    async def handle(self, req):
        self.ran.append((type(req.body).__name__, req.sender, req.role))
        if self.gate is not None:
            await self.gate.wait()
        return SecDone(who=req.sender, role=req.role)


_n = itertools.count()


class Cluster:
    """Keys for a hub and some nodes in tmp_path, and configs to run them with."""

    def __init__(self, tmp_path, **kw):
        self.base = tmp_path
        self.hub_dir = tmp_path / "hub"
        self.kw = dict(heartbeat_s=0.1, liveness=3, call_timeout_s=5.0, security="curve", **kw)
        self.dirs: dict[str, str] = {}

    def add(self, name: str, role: str, pin: bool = True) -> str:
        d = str(self.base / name)
        self.dirs[name] = d
        keys.provision(self.hub_dir, [(d, role, name if pin else "")])
        return keys.read_key_pair(d)[0].decode()

    def hub_cfg(self) -> BusConfig:
        return BusConfig(address="tcp://127.0.0.1:*", key_dir=str(self.hub_dir), **self.kw)

    def cfg(self, name: str, **kw) -> BusConfig:
        return BusConfig(address=self.address, key_dir=self.dirs[name], **{**self.kw, **kw})


@pytest.fixture
async def cluster(tmp_path, nursery):
    c = Cluster(tmp_path)
    for name, role in [("w1", "worker"), ("w2", "worker"), ("manager-1", "manager"),
                       ("reader", "reader"), ("admin", "admin")]:
        c.add(name, role)
    c.hub = ZmqHub(c.hub_cfg())
    c.address = await nursery.start(c.hub.run)
    return c


async def run_fails(peer: Peer) -> BaseException:
    """What a peer's run raised (unwrapped from Trio's exception groups)."""
    try:
        with trio.fail_after(10):
            await peer.run()
    except BaseException as e:
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        return e
    raise AssertionError("the peer ran")


async def start(nursery, peer: Peer) -> Peer:
    await nursery.start(peer.run)
    return peer


async def client(nursery, c: Cluster, name: str) -> Peer:
    """An unregistered client (like the CLI) with `name`'s keys."""
    return await start(nursery, Peer(name=f"cli-{next(_n)}", role="cli", register=False,
                                     cfg=c.cfg(name)))


async def test_an_unknown_key_is_refused_at_the_handshake_and_logged(cluster, nursery, caplog):
    stranger = str(cluster.base / "stranger")
    public = keys.init_key_pair(stranger)
    (cluster.base / "stranger" / keys.HUB_FILE).write_text(
        keys.read_key_pair(cluster.hub_dir)[0].decode())
    peer = Peer(name="stranger", role="worker", cfg=BusConfig(
        address=cluster.address, key_dir=stranger, **cluster.kw))
    with caplog.at_level(logging.WARNING, logger="zqnode.bus"):
        e = await run_fails(peer)
    assert isinstance(e, HandshakeRefused) and f"refused this node's key {public}" in str(e)
    assert cluster.hub.auth.refused >= 1
    assert any(f"refused key {public}" in r.getMessage() and "not on the allow-list" in r.getMessage()
               for r in caplog.records)
    listing = await (await client(nursery, cluster, "reader")).call(HUB, ListNodes())
    assert "stranger" not in {n.node_id for n in listing.nodes}


def test_a_key_allowed_a_moment_ago_is_let_in_at_once(tmp_path):
    """`zqnode keys allow` then a node's start: its handshake finds the new list."""
    from zqnode.bus.auth import DOMAIN_RPC, Authenticator
    path = tmp_path / keys.ALLOW_FILE
    auth = Authenticator(zmq.Context.instance(), path, check_every_s=3600)
    auth.reload(initial=True)
    public = keys.init_key_pair(tmp_path / "w1")
    keys.AllowList([keys.Allowed(public, "worker", "w1")]).save(path)
    frames = [b"rid", b"", b"1.0", b"7", DOMAIN_RPC, b"127.0.0.1", b"", b"CURVE",
              z85.decode(public.encode())]
    assert auth._decide(frames)[4:7] == [b"200", b"OK", public.encode()]
    stranger = keys.init_key_pair(tmp_path / "x")
    assert auth._decide([*frames[:8], z85.decode(stranger.encode())])[4] == b"400"


async def test_a_wrong_hub_key_fails_the_handshake(cluster):
    cfg = BusConfig(address=cluster.address, key_dir=cluster.dirs["w1"],
                    hub_key=keys.read_key_pair(cluster.dirs["w2"])[0].decode(), **cluster.kw)
    e = await run_fails(Peer(name="w1", role="worker", cfg=cfg))
    assert isinstance(e, HandshakeRefused) and "is bus.hub_key (or hub.pub) the hub's public key" in str(e)


async def test_a_worker_key_calling_an_admin_method_is_refused(cluster, nursery):
    m = Manager(cluster.cfg("manager-1"))
    await start(nursery, m.peer)
    worker = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
    for msg in (SecAbortJob(job="j1"), SecResumeSector(sector=7), SecSetConfig(key="k", value="v")):
        with pytest.raises(RemoteError) as e:
            await worker.call("manager-1", msg)
        assert e.value.code == ErrorCode.PERMISSION
        assert e.value.message == (f"role 'worker' may not send {type(msg).__name__} to manager-1 "
                                   "(allowed: admin)")
    assert m.ran == []                                     # no handler ran
    assert await worker.call("@manager", SecReportResult(job="j1", ok=True)) == SecDone(who="w1", role="worker")
    assert await worker.call("manager-1", SecReportStatus(text="ok")) == SecDone(who="w1", role="worker")
    admin = await client(nursery, cluster, "admin")
    done = await admin.call("manager-1", SecAbortJob(job="j1"))
    assert done.role == "admin" and done.who.startswith("~")    # the hub's name for a client
    assert [k for k, _, _ in m.ran] == ["SecReportResult", "SecReportStatus", "SecAbortJob"]


async def test_a_read_key_can_read_but_not_act_nor_tap_rpc_and_an_admin_key_can_tap(cluster, nursery):
    m = Manager(cluster.cfg("manager-1"))
    await start(nursery, m.peer)
    reader = await client(nursery, cluster, "reader")
    with pytest.raises(RemoteError) as e:            # the tap shows every request body
        await reader.call(HUB, Tap())
    assert (e.value.code, e.value.message) == (ErrorCode.PERMISSION,
                                               "only an admin key may tap the bus's RPC")
    admin = await client(nursery, cluster, "admin")
    with admin.subscribe("bus.rpc.") as sub:
        with trio.fail_after(10):
            while True:                          # until the tap is on at the hub
                await reader.call("manager-1", SecSectorInfo(sector=1))    # ANYONE: readers too
                with trio.move_on_after(0.2):
                    await sub.receive()
                    break
        w1 = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
        await w1.call("manager-1", SecReportResult(job="j", ok=True))
        seen = []
        with trio.fail_after(10):
            while ("bus.rpc.SecDone", "manager-1", "w1") not in seen:
                ev = await sub.receive()
                seen.append((ev.topic, ev.sender, ev.to))
    assert ("bus.rpc.SecReportResult", "w1", "manager-1") in seen
    assert {n.node_id for n in (await reader.call(HUB, ListNodes())).nodes} == {"manager-1", "w1"}
    with pytest.raises(RemoteError) as e:
        await reader.call("manager-1", SecReportStatus(text="x"))
    assert e.value.code == ErrorCode.PERMISSION and "role 'reader'" in e.value.message
    assert await reader.call("w1", Ping()) == Pong(node_id="w1", role="worker")


async def test_a_reader_key_cannot_register_and_keys_keep_to_their_role(cluster, nursery):
    e = await run_fails(Peer(name="reader", role="worker", cfg=cluster.cfg("reader")))
    assert (e.code, e.message) == (ErrorCode.PERMISSION, "a reader key cannot register a node")
    e = await run_fails(Peer(name="w1", role="manager", cfg=cluster.cfg("w1")))
    assert (e.code, e.message) == (ErrorCode.PERMISSION, "this key is allowed as 'worker', not 'manager'")


async def test_a_node_cannot_claim_another_nodes_name(tmp_path, nursery):
    c = Cluster(tmp_path)
    c.add("w1", "worker")                          # pinned to its name
    c.add("free-1", "worker", pin=False)
    c.add("free-2", "worker", pin=False)
    c.hub = ZmqHub(c.hub_cfg())
    c.address = await nursery.start(c.hub.run)
    e = await run_fails(Peer(name="w1", role="worker", cfg=c.cfg("free-1")))
    assert (e.code, e.message) == (ErrorCode.PERMISSION, "name 'w1' is pinned to another key")
    e = await run_fails(Peer(name="w9", role="worker", cfg=c.cfg("w1")))
    assert (e.code, e.message) == (ErrorCode.PERMISSION, "this key may register only as 'w1'")
    await start(nursery, Peer(name="shared", role="worker", cfg=c.cfg("free-1")))
    e = await run_fails(Peer(name="shared", role="worker", cfg=c.cfg("free-2")))
    assert (e.code, e.message) == (ErrorCode.PERMISSION, "node name 'shared' is registered with another key")


async def test_the_hub_stamps_the_sender_whatever_the_envelope_claims(cluster, nursery):
    m = Manager(cluster.cfg("manager-1"))
    await start(nursery, m.peer)
    w1 = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
    raw = RawLink(cluster.cfg("w2"), "w2", keys.peer_credentials(cluster.cfg("w2"), "w2"))
    async with raw.open() as link:
        # a node's key must register before it talks to other nodes
        await link.send([b"manager-1", encode_envelope("w1", SecReportStatus(text="hi"), id=4)])
        rid, err = await raw.next(msgspec.Raw)
        err = msgspec.msgpack.decode(err)
        assert (rid, err["code"], err["retry"]) == (4, ErrorCode.NOT_REGISTERED, True)
        await link.send([b"hub", encode_envelope("w2", Register(role="worker", name="w2", session="s"), id=5)])
        assert (await raw.next(msgspec.Raw))[0] == 5
        # a zmq identity and an envelope that both claim to be w1
        await link.send([b"manager-1", encode_envelope("w1", SecReportStatus(text="hi"), id=6)])
        assert await raw.next(SecDone) == (6, SecDone(who="w2", role="worker"))
        frm, role = raw.last[:2]
    assert (frm, role) == (b"manager-1", b"manager")
    assert await w1.call("manager-1", SecReportStatus(text="me")) == SecDone(who="w1", role="worker")


async def test_revoking_a_key_drops_its_node_and_refuses_its_messages(cluster, nursery):
    watcher = await client(nursery, cluster, "reader")
    # a slow heartbeat: w2 keeps its connection (no reconnect) for the test's length
    w2 = await start(nursery, Peer(name="w2", role="worker", cfg=cluster.cfg("w2", heartbeat_s=10.0)))
    m = Manager(cluster.cfg("manager-1"))
    await start(nursery, m.peer)
    path = cluster.hub_dir / keys.ALLOW_FILE
    allow = keys.AllowList.load(path)
    w2_key = keys.read_key_pair(cluster.dirs["w2"])[0].decode()
    with watcher.subscribe("node.down") as sub:
        with trio.fail_after(10):
            while True:                            # until the subscription is in place
                assert await w2.call("manager-1", SecReportStatus(text="a")) == SecDone(who="w2", role="worker")
                allow.without(w2_key).save(path)
                cluster.hub.auth.reload()
                with trio.move_on_after(0.3):
                    ev = await sub.receive()
                    break
                allow.save(path)                   # put it back and try again
                cluster.hub.auth.reload()
    assert ev.body == NodeDown(node_id="w2", role="worker", reason="revoked")
    with pytest.raises(RemoteError) as e:
        await w2.call("manager-1", SecReportStatus(text="b"))
    assert e.value.code == ErrorCode.PERMISSION and "allow-list" in e.value.message
    e = await run_fails(Peer(name="w2", role="worker", cfg=cluster.cfg("w2")))   # a new connection
    assert isinstance(e, HandshakeRefused)


async def test_an_allow_list_that_does_not_parse_keeps_the_old_one(cluster, nursery, caplog):
    path = cluster.hub_dir / keys.ALLOW_FILE
    before = dict(cluster.hub.auth.allow.entries)
    path.write_text(path.read_text() + "not-a-key worker\n")
    with caplog.at_level(logging.ERROR, logger="zqnode.bus.auth"):
        assert cluster.hub.auth.reload() is False
    assert cluster.hub.auth.allow.entries == before
    assert any("line 7" in r.getMessage() and "previous one stays" in r.getMessage() for r in caplog.records)
    reader = await client(nursery, cluster, "reader")
    assert await reader.call(HUB, Ping()) == Pong(node_id="hub", role="bus")


# -- replays and limits: the same on every transport; in memory here --------------------
def mem_cfg(**kw) -> BusConfig:
    return BusConfig(address=f"mem://sec-{next(_n)}", heartbeat_s=0.1, call_timeout_s=5.0, **kw)


class RawLink:
    """A bare link: sends any frames, keeps the replies; `next` decodes the oldest."""

    def __init__(self, cfg, name, credentials=None):
        self.cfg, self.name, self.replies, self.credentials = cfg, name, [], credentials
        self._got = trio.Event()
        self.last = None

    def open(self):
        return open_link(self.cfg.address, self.name, self.cfg, None, self._on_rpc, lambda b: None,
                         self.credentials)

    def _on_rpc(self, batch):
        self.replies.extend(batch)
        self._got.set()

    async def next(self, kind):
        with trio.fail_after(5):
            while not self.replies:
                self._got = trio.Event()
                await self._got.wait()
        self.last = self.replies.pop(0)
        env = decode_envelope(self.last[2])
        return env.id, msgspec.msgpack.decode(env.body, type=kind)


async def test_replayed_requests_do_nothing_twice(nursery):
    cfg = mem_cfg(replay_window=4)
    await nursery.start(MemoryHub(cfg).run)
    m = Manager(cfg)
    await start(nursery, m.peer)
    raw = RawLink(cfg, "w-raw")
    async with raw.open() as link:
        request = encode_envelope("w-raw", SecReportStatus(text="once"), id=41)
        await link.send([b"manager-1", request])
        assert await raw.next(SecDone) == (41, SecDone(who="w-raw", role="admin"))
        await link.send([b"manager-1", request])                    # the same bytes again
        rid, err = await raw.next(msgspec.Raw)
        err = msgspec.msgpack.decode(err)
        assert (rid, err["code"], err["message"]) == (41, "replay", "request 41 was already received; not run again")
        for i in range(42, 46):                                      # four newer ids push 41 out
            await link.send([b"manager-1", encode_envelope("w-raw", SecReportStatus(text="n"), id=i)])
            assert (await raw.next(SecDone))[0] == i
        await link.send([b"manager-1", request])
        assert (await raw.next(SecDone))[0] == 41                   # beyond the window: a new request
    assert [k for k, _, _ in m.ran] == ["SecReportStatus"] * 6


async def test_replay_windows_are_per_caller(nursery):
    cfg = mem_cfg()
    await nursery.start(MemoryHub(cfg).run)
    m = Manager(cfg)
    await start(nursery, m.peer)
    for name in ("a", "b"):
        raw = RawLink(cfg, name)
        async with raw.open() as link:
            await link.send([b"manager-1", encode_envelope(name, SecReportStatus(text=name), id=7)])
            assert await raw.next(SecDone) == (7, SecDone(who=name, role="admin"))
    assert len(m.ran) == 2


async def test_a_caller_over_its_inflight_limit_gets_busy_and_others_are_served(nursery):
    cfg = mem_cfg(max_inflight_per_sender=2)
    await nursery.start(MemoryHub(cfg).run)
    m = Manager(cfg)
    m.gate = trio.Event()
    await start(nursery, m.peer)
    greedy = await start(nursery, Peer(name="greedy", role="worker", cfg=cfg))
    other = await start(nursery, Peer(name="other", role="worker", cfg=cfg))
    results = []

    async def call(peer, text):
        try:
            results.append((text, (await peer.call("manager-1", SecReportStatus(text=text))).who))
        except RemoteError as e:
            results.append((text, e.code, e.retry))
    async with trio.open_nursery() as n:
        for text in ("g1", "g2", "g3"):
            n.start_soon(call, greedy, text)
            await trio.sleep(0.01)
        n.start_soon(call, other, "o1")
        await trio.sleep(0.05)
        assert ("g3", ErrorCode.BUSY, True) in results
        m.gate.set()
    assert sorted(results, key=str) == sorted([("g1", "greedy"), ("g2", "greedy"), ("o1", "other"),
                                               ("g3", ErrorCode.BUSY, True)], key=str)


async def test_the_hub_limits_requests_open_per_caller(nursery):
    cfg = mem_cfg(hub_max_inflight_per_sender=2)
    await nursery.start(MemoryHub(cfg).run)
    gate = trio.Event()

    async def held(req):
        await gate.wait()
        return Pong(node_id="x", role="y")
    targets = [Peer(name=f"t{i}", role="worker", cfg=cfg) for i in range(3)]
    for t in targets:
        t.on(SecReportStatus, held)
        await start(nursery, t)
    caller = await start(nursery, Peer(name="caller", role="worker", cfg=cfg))
    results = []

    async def call(to):
        try:
            await caller.call(to, SecReportStatus(text="x"))
            results.append((to, "ok"))
        except RemoteError as e:
            results.append((to, e.code, e.peer, e.message))
    async with trio.open_nursery() as n:
        for t in targets:
            n.start_soon(call, t.node_id)
            await trio.sleep(0.01)
        await trio.sleep(0.05)
        gate.set()
    assert sorted(results) == [("t0", "ok"), ("t1", "ok"),
                               ("t2", ErrorCode.BUSY, "t2", "caller has 2 requests open through the hub")]
    assert await caller.call("t2", SecReportStatus(text="y")) == Pong(node_id="x", role="y")


async def test_without_keys_the_registered_role_is_stamped(nursery):
    cfg = mem_cfg()
    await nursery.start(MemoryHub(cfg).run)
    m = Manager(cfg)
    await start(nursery, m.peer)
    worker = await start(nursery, Peer(name="w1", role="worker", cfg=cfg))
    with pytest.raises(RemoteError) as e:
        await worker.call("manager-1", SecAbortJob(job="j"))
    assert e.value.code == ErrorCode.PERMISSION
    cli = await start(nursery, Peer(name="cli", role="cli", cfg=cfg, register=False))
    assert await cli.call("manager-1", SecAbortJob(job="j")) == SecDone(who="cli", role="admin")


async def test_ipc_sockets_are_for_this_user_only(tmp_path, nursery):
    path = tmp_path / "run" / "bus.sock"
    await nursery.start(ZmqHub(BusConfig(address=f"ipc://{path}")).run)
    for p in (path, tmp_path / "run" / "bus.sock.events-in", tmp_path / "run" / "bus.sock.events-out"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700


async def test_a_hub_without_its_keys_says_what_to_do(tmp_path):
    with pytest.raises(keys.KeyFileError, match="no key pair in .*keys init"):
        await ZmqHub(BusConfig(address="tcp://127.0.0.1:*", security="curve",
                               key_dir=str(tmp_path / "nothing"))).run()


async def test_with_keys_a_restarted_node_takes_its_name_back_and_a_new_hub_is_rejoined(
        tmp_path, nursery, free_bus_address):
    c = Cluster(tmp_path)
    c.add("w1", "worker")
    c.add("manager-1", "manager")
    c.address = free_bus_address()
    hub_cfg = BusConfig(address=c.address, key_dir=str(c.hub_dir), **c.kw)
    m = Manager(c.cfg("manager-1"))
    with trio.CancelScope() as first_hub:
        async with trio.open_nursery() as hub_nursery:
            await hub_nursery.start(ZmqHub(hub_cfg).run)
            await start(nursery, m.peer)
            with trio.CancelScope() as crash:          # w1 dies without a goodbye ...
                async with trio.open_nursery() as n:
                    old = await start(n, Peer(name="w1", role="worker", cfg=c.cfg("w1")))
                    old.notify = _silent
                    assert (await old.call("manager-1", SecReportStatus(text="1"))).who == "w1"
                    crash.cancel()
            w1 = await start(nursery, Peer(name="w1", role="worker", cfg=c.cfg("w1")))   # ... and is back
            assert await w1.call("manager-1", SecReportStatus(text="2")) == SecDone(who="w1", role="worker")
            first_hub.cancel()
    await nursery.start(ZmqHub(hub_cfg).run)            # a new hub process: nothing remembered
    with trio.fail_after(10):
        while True:
            try:
                done = await w1.call("manager-1", SecReportStatus(text="3"), timeout=1)
                break
            except (RemoteError, CallTimeout):
                await trio.sleep(0.1)                   # until both have registered again
    assert done == SecDone(who="w1", role="worker")
    assert w1.registrations >= 2 and m.peer.registrations >= 2


async def _silent(*args, **kwargs):
    pass


class SecHead(Msg):
    epoch: int


async def test_events_carry_the_publishers_key_identity_not_its_claim(cluster, nursery):
    m = await start(nursery, Manager(cluster.cfg("manager-1")).peer)
    w1 = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
    with m.subscribe("chain.", "node.", "probe.") as sub:
        while True:                                   # until the subscription reaches the hub
            await w1.publish("probe.x", SecHead(epoch=0))
            with trio.move_on_after(0.2):
                if (await sub.receive()).topic == "probe.x":
                    break
        # w1's key, another node's name in the envelope: dropped at the hub
        await w1.link.publish(event_frames("chain.head", encode_envelope("manager-1", SecHead(epoch=1))))
        # the hub's own topics, from a node: dropped
        await w1.publish("node.down", NodeDown(node_id="manager-1", role="manager", reason="left"))
        await w1.publish("chain.head", SecHead(epoch=2))           # its own name: stamped as such
        with trio.fail_after(5):
            ev = await sub.receive()
    assert (ev.topic, ev.sender, ev.role, ev.body) == ("chain.head", "w1", "worker", SecHead(epoch=2))
    assert sub._queue == deque() and cluster.hub.refused_events == 2


async def test_a_subscriber_takes_a_topic_only_from_the_roles_that_own_it(cluster, nursery):
    m = await start(nursery, Manager(cluster.cfg("manager-1")).peer)
    w1 = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
    with m.subscribe("chain.", roles=["chain"]) as owned, m.subscribe("chain.") as anyone:
        while True:
            await w1.publish("chain.probe", SecHead(epoch=0))
            with trio.move_on_after(0.2):
                await anyone.receive()
                break
        await w1.publish("chain.head", SecHead(epoch=10 ** 6))      # a worker is no chain
        with trio.fail_after(5):
            assert (await anyone.receive()).body == SecHead(epoch=10 ** 6)
        with trio.move_on_after(0.5):
            await owned.receive()
            raise AssertionError("a worker's chain.head was taken")


async def test_a_reply_is_taken_only_from_the_node_the_request_went_to(cluster, nursery):
    gate = trio.Event()
    m = Manager(cluster.cfg("manager-1"))
    m.gate = gate                                     # the manager answers late
    await start(nursery, m.peer)
    w1 = await start(nursery, Peer(name="w1", role="worker", cfg=cluster.cfg("w1")))
    w2 = await start(nursery, Peer(name="w2", role="worker", cfg=cluster.cfg("w2")))
    got = []

    async def ask():
        got.append(await w1.call("manager-1", SecReportStatus(text="real")))
    nursery.start_soon(ask)
    while not m.ran:
        await trio.sleep(0.01)
    # w2 forges the answer: every id w1 may be using, aimed at w1 (ids are sequential)
    first = next(iter(w1._pending))
    for rid in range(first - 3, first + 4):
        await w2.link.send([b"w1", encode_envelope("w2", SecDone(who="forged", role="admin"),
                                                   id=rid, reply=True)])
    await trio.sleep(0.3)
    assert got == []                                  # nothing reached w1
    gate.set()
    with trio.fail_after(5):
        while not got:
            await trio.sleep(0.01)
    assert got == [SecDone(who="w1", role="worker")]


async def test_a_clients_replay_window_holds_across_reconnects(cluster, nursery):
    m = Manager(cluster.cfg("manager-1"))
    await start(nursery, m.peer)
    admin = await client(nursery, cluster, "admin")
    req = [b"manager-1", encode_envelope("x", SecAbortJob(job="j"), id=4242)]
    assert (await admin.call("manager-1", Ping())).node_id == "manager-1"
    await admin.link.send(req)
    await admin.link.reset()                          # a new connection: a new "~..." name
    await admin.link.send(req)                        # the same request again
    await trio.sleep(0.5)
    assert [k for k, _, _ in m.ran] == ["SecAbortJob"]


async def test_open_requests_are_limited_per_key_across_connections_and_clients_serve_none(
        tmp_path, nursery):
    c = Cluster(tmp_path, hub_max_inflight_per_sender=2)
    for name, role in [("w1", "worker"), ("admin", "admin")]:
        c.add(name, role)
    c.address = await nursery.start(ZmqHub(c.hub_cfg()).run)
    gate, senders = trio.Event(), []

    async def held(req):
        senders.append(req.sender)
        await gate.wait()
        return Pong(node_id="w1", role="worker")
    w1 = Peer(name="w1", role="worker", cfg=c.cfg("w1"))
    w1.on(SecReportStatus, held)
    await start(nursery, w1)
    clients = [await client(nursery, c, "admin") for _ in range(3)]   # one key, three connections
    results = []

    async def ask(peer, to):
        try:
            results.append(await peer.call(to, SecReportStatus(text="x")))
        except RemoteError as e:
            results.append((e.code, e.message))
    async with trio.open_nursery() as n:
        for peer in clients:
            n.start_soon(ask, peer, "w1")
            await trio.sleep(0.05)
        await trio.sleep(0.2)
        busy = [r for r in results if r[0] == ErrorCode.BUSY]
        assert len(busy) == 1 and busy[0][1].endswith(
            "has 2 requests open through the hub (with its key)"), results
        gate.set()
    assert results.count(Pong(node_id="w1", role="worker")) == 2
    assert all(name.startswith("~") for name in senders)
    await ask(clients[2], senders[0])               # a request to a client: no one serves it
    assert results[-1] == (ErrorCode.NO_ROUTE, f"{senders[0]!r} is a client: it serves no requests")
