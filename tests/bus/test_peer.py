"""Peers and hubs together, over every transport: RPC, errors, limits, events, liveness."""
import itertools

import msgspec
import pytest
import trio

from zqnode.bus.codec import (Envelope, Error, ErrorCode, Msg, RemoteError, decode_envelope, event_frames,
                              encode_envelope)
from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import CallTimeout, Peer, Refused, open_link
from zqnode.bus.protocol import HUB, ListNodes, NodeDown, NodeUp, Ping, Pong


class PeerEcho(Msg):
    text: str


class PeerSlow(Msg):
    pass


class PeerTick(Msg):
    n: int


_names = itertools.count()


def address(kind: str, tmp_path, tcp: str = "tcp://127.0.0.1:*") -> str:
    n = next(_names)
    return {"mem": f"mem://test-{n}", "inproc": f"inproc://test-{n}",
            "ipc": f"ipc://{tmp_path}/bus-{n}.sock", "tcp": tcp}[kind]


def settings(addr: str, **kw) -> BusConfig:
    base = dict(address=addr, heartbeat_s=0.1, liveness=3, call_timeout_s=5.0)
    if addr.startswith("tcp"):
        base["security"] = "none"          # these tests are about routing; test_security: keys
    base.update(kw)
    return BusConfig(**base)


def make_hub(cfg: BusConfig):
    return MemoryHub(cfg) if cfg.address.startswith("mem") else ZmqHub(cfg)


@pytest.fixture(params=["mem", "inproc", "ipc", "tcp"])
def transport(request):
    return request.param


@pytest.fixture
async def bus(transport, tmp_path, nursery):
    """A running hub; returns the settings peers use to reach it."""
    cfg = settings(address(transport, tmp_path))
    bound = await nursery.start(make_hub(cfg).run)
    return settings(bound)


async def start_peer(nursery, cfg: BusConfig, name: str, role: str = "test", **handlers) -> Peer:
    peer = Peer(name=name, role=role, cfg=cfg)
    for kind, fn in handlers.items():
        peer.on(globals()[kind], fn)
    await nursery.start(peer.run)
    return peer


async def echo(req):
    if req.body.text == "boom":
        raise RuntimeError("handler exploded")
    if req.body.text == "no":
        raise Refused(ErrorCode.PERMISSION, "not you")
    return PeerEcho(text=req.body.text + "!")


async def test_call_by_node_id_and_by_role(bus, nursery):
    await start_peer(nursery, bus, "w1", role="worker", PeerEcho=echo)
    await start_peer(nursery, bus, "w2", role="worker", PeerEcho=echo)
    client = await start_peer(nursery, bus, "client")
    assert await client.call("w1", PeerEcho(text="hi")) == PeerEcho(text="hi!")
    pongs = {(await client.call("@worker", Ping())).node_id for _ in range(4)}
    assert pongs == {"w1", "w2"}
    assert await client.call(HUB, Ping()) == Pong(node_id="hub", role="bus")


async def test_missing_routes_are_typed_errors(bus, nursery):
    client = await start_peer(nursery, bus, "client")
    with pytest.raises(RemoteError) as e:
        await client.call("nobody", Ping())
    assert e.value.code == ErrorCode.NO_ROUTE and "nobody" in e.value.message
    with pytest.raises(RemoteError) as e:
        await client.call("@scheduler", Ping())
    assert e.value.code == ErrorCode.NO_ROUTE


async def test_handler_failures_are_typed_errors_and_the_node_keeps_serving(bus, nursery):
    await start_peer(nursery, bus, "w1", PeerEcho=echo)
    client = await start_peer(nursery, bus, "client")
    with pytest.raises(RemoteError) as e:
        await client.call("w1", PeerEcho(text="boom"))
    assert e.value.code == ErrorCode.HANDLER and "handler exploded" in e.value.message
    with pytest.raises(RemoteError) as e:
        await client.call("w1", PeerEcho(text="no"))
    assert (e.value.code, e.value.message) == (ErrorCode.PERMISSION, "not you")
    assert await client.call("w1", PeerEcho(text="ok")) == PeerEcho(text="ok!")


async def test_a_failing_handler_logs_its_traceback_once_a_minute_not_per_request(
        bus, nursery, caplog):
    await start_peer(nursery, bus, "w1", PeerEcho=echo)
    client = await start_peer(nursery, bus, "client")
    for _ in range(50):
        with pytest.raises(RemoteError):
            await client.call("w1", PeerEcho(text="boom"))
    lines = [r for r in caplog.records if "handler for PeerEcho failed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is not None


async def test_call_timeout(bus, nursery):
    async def never(req):
        await trio.sleep_forever()
    await start_peer(nursery, bus, "w1", PeerSlow=never)
    client = await start_peer(nursery, bus, "client")
    with pytest.raises(CallTimeout, match="did not answer PeerSlow"):
        await client.call("w1", PeerSlow(), timeout=0.2)
    assert client._pending == {}              # nothing left behind


class Raw:
    """A bare link: sends any frames, keeps every reply it gets."""

    def __init__(self, cfg, name="raw"):
        self.replies: list[list] = []
        self.got = trio.Event()
        self.cfg, self.name = cfg, name

    def open(self):
        return open_link(self.cfg.address, self.name, self.cfg, None, self._on_rpc, lambda b: None)

    def _on_rpc(self, batch):
        self.replies.extend(batch)
        self.got.set()

    async def reply(self, kind=Error) -> tuple[str, Envelope, Msg]:
        with trio.fail_after(5):
            while not self.replies:
                self.got = trio.Event()
                await self.got.wait()
        frm, _role, env, *_ = self.replies.pop(0)      # [sender, role, envelope, ...]
        env = decode_envelope(env)
        return frm.decode(), env, msgspec.msgpack.decode(env.body, type=kind)


async def test_bad_input_gets_a_typed_error_naming_the_request(bus, nursery):
    await start_peer(nursery, bus, "w1", PeerEcho=echo)
    raw = Raw(bus)
    async with raw.open() as link:
        raw.link = link
        body = msgspec.msgpack.encode
        cases = [
            ([b"w1", b"\xc1garbage"], 0, ErrorCode.BAD_FRAMES),
            ([b"w1", encode_envelope("raw", msgspec.Raw(body({"kind": "Nope"})), id=7)], 7, ErrorCode.UNKNOWN_KIND),
            ([b"w1", encode_envelope("raw", msgspec.Raw(body({"kind": "PeerEcho", "text": 5})), id=8)], 8, ErrorCode.INVALID),
            ([b"w1", encode_envelope("raw", msgspec.Raw(body({"kind": "PeerEcho", "text": "a", "x": 1})), id=9)], 9, ErrorCode.INVALID),
            ([b"w1", encode_envelope("raw", msgspec.Raw(body(5)), id=10)], 10, ErrorCode.INVALID),
            ([b"w1"], 0, ErrorCode.BAD_FRAMES),                       # no envelope at all: the hub answers
            ([b"w1", body([5, {"kind": "PeerEcho"}, 13])], 13, ErrorCode.BAD_FRAMES),  # its id read still
            ([b"hub", encode_envelope("raw", PeerEcho(text="x"), id=11)], 11, ErrorCode.UNKNOWN_KIND),
        ]
        for frames, rid, code in cases:
            await raw.link.send(frames)
            frm, env, err = await raw.reply()
            assert (env.reply, env.id, err.code) == (True, rid, code), (frames, err)
        await raw.link.send([b"w1", encode_envelope("raw", PeerEcho(text="fine"), id=12)])
        frm, env, body = await raw.reply(PeerEcho)
        assert (frm, env.id, body) == ("w1", 12, PeerEcho(text="fine!"))


async def test_oversized_messages_are_refused_with_too_large(transport, tmp_path, nursery):
    cfg = settings(address(transport, tmp_path), max_message_bytes=64 << 10, max_envelope_bytes=4 << 10)
    cfg = settings(await nursery.start(make_hub(cfg).run), max_message_bytes=64 << 10,
                   max_envelope_bytes=4 << 10)
    await start_peer(nursery, cfg, "w1", PeerEcho=echo)
    client = await start_peer(nursery, cfg, "client")
    with pytest.raises(RemoteError) as e:
        await client.call("w1", PeerEcho(text="a"), buffers=[b"x" * (30 << 10)] * 3)
    assert e.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(RemoteError) as e:
        await client.call("w1", PeerEcho(text="a" * (8 << 10)))
    assert e.value.code == ErrorCode.TOO_LARGE
    assert await client.call("w1", PeerEcho(text="a"), buffers=[b"x" * (30 << 10)]) == PeerEcho(text="a!")


async def test_a_frame_over_maxmsgsize_drops_only_that_connection(tmp_path, nursery):
    cfg = settings(address("tcp", tmp_path), max_message_bytes=64 << 10)
    cfg = settings(await nursery.start(make_hub(cfg).run), max_message_bytes=64 << 10)
    await start_peer(nursery, cfg, "w1", PeerEcho=echo)
    client = await start_peer(nursery, cfg, "client")
    raw = Raw(settings(cfg.address))          # a peer with no limit of its own
    async with raw.open() as link:
        raw.link = link
        await raw.link.send([b"w1", encode_envelope("raw", PeerEcho(text="x"), id=1), b"x" * (1 << 20)])
        await trio.sleep(0.2)
    assert raw.replies == []                  # libzmq disconnected it before buffering
    assert await client.call("w1", PeerEcho(text="still")) == PeerEcho(text="still!")


async def test_busy_when_every_handler_slot_is_taken(transport, tmp_path, nursery):
    cfg = settings(await nursery.start(make_hub(settings(address(transport, tmp_path))).run),
                   max_concurrent_handlers=2)
    release = trio.Event()

    async def held(req):
        await release.wait()
        return PeerSlow()
    await start_peer(nursery, cfg, "w1", PeerSlow=held)
    client = await start_peer(nursery, settings(cfg.address), "client")
    results = []

    async def call():
        try:
            results.append(type(await client.call("w1", PeerSlow())).__name__)
        except RemoteError as e:
            results.append((e.code, e.retry))
    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(call)
            await trio.sleep(0.05)
        release.set()
    assert sorted(results, key=str) == [(ErrorCode.BUSY, True), "PeerSlow", "PeerSlow"]


async def test_inflight_limit_makes_callers_wait_instead_of_queueing(bus, nursery):
    gate = trio.Event()
    entered = []

    async def held(req):
        entered.append(1)
        await gate.wait()
        return PeerSlow()
    await start_peer(nursery, bus, "w1", PeerSlow=held)
    client = Peer(name="client", role="test", cfg=settings(bus.address, max_inflight_calls=2))
    await nursery.start(client.run)
    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(client.call, "w1", PeerSlow())
        await trio.sleep(0.3)
        assert len(entered) == 2 and len(client._pending) == 2   # the third waits at the caller
        gate.set()
    assert len(entered) == 3


async def test_events_by_topic_prefix_with_sequence_per_publisher_and_topic(bus, nursery):
    pub = await start_peer(nursery, bus, "pub")
    sub_peer = await start_peer(nursery, bus, "sub")
    with sub_peer.subscribe("a.") as sub:
        await until_subscribed(lambda t: pub.publish(t, PeerTick(n=0)), sub, "a.probe")
        for topic, n in [("a.x", 1), ("b.z", 2), ("a.y", 3), ("a.x", 4)]:
            await pub.publish(topic, PeerTick(n=n), cause="c-1")
        got = []
        with trio.fail_after(5):
            while len(got) < 3:
                ev = await sub.receive()
                got.append((ev.topic, ev.sender, ev.seq, ev.body, ev.cause, ev.gap))
    assert got == [("a.x", "pub", 1, PeerTick(n=1), "c-1", 0), ("a.y", "pub", 1, PeerTick(n=3), "c-1", 0),
                   ("a.x", "pub", 2, PeerTick(n=4), "c-1", 0)]


async def test_gaps_and_restarts_in_a_sequence_are_marked(bus, nursery):
    sub_peer = await start_peer(nursery, bus, "sub")
    link = (await start_peer(nursery, bus, "pub")).link     # frames with sequence numbers we pick
    with sub_peer.subscribe("t.") as sub:
        await until_subscribed(lambda t: link.publish(
            event_frames(t, encode_envelope("pub", PeerTick(n=0)))), sub, "t.probe")
        for seq in (1, 2, 5, 1):
            await link.publish(event_frames("t.x", encode_envelope("pub", PeerTick(n=seq), seq=seq)))
        marks = []
        with trio.fail_after(5):
            while len(marks) < 4:
                ev = await sub.receive()
                marks.append((ev.seq, ev.gap, ev.reset))
    assert marks == [(1, 0, False), (2, 0, False), (5, 2, False), (1, 0, True)]


async def until_subscribed(publish, sub, topic: str) -> None:
    """Publish probes on `topic` until one arrives (zmq subscriptions propagate
    asynchronously), then drain the probes. Sequences are per topic, so probes on their
    own topic leave the others' untouched."""
    with trio.fail_after(10):
        while True:
            await publish(topic)
            with trio.move_on_after(0.05):
                while (await sub.receive()).topic != topic:
                    pass
                break
    while sub._queue:
        await sub.receive()


async def _endpoints(peer: Peer):
    from zqnode.bus.address import reachable
    from zqnode.bus.protocol import HubInfo
    info = await peer.call(HUB, HubInfo())
    return reachable(info.events_in, peer.cfg.address), reachable(info.events_out, peer.cfg.address)


async def test_tap_publishes_routed_requests_and_replies(bus, nursery):
    await start_peer(nursery, bus, "w1", PeerEcho=echo)
    client = await start_peer(nursery, bus, "client")
    watcher = Peer(name="watcher", role="client", cfg=bus, register=False)   # no keys: admin
    await nursery.start(watcher.run)
    with watcher.subscribe("bus.rpc.") as sub:
        await until_subscribed(lambda t: client.call("w1", Ping()), sub, "bus.rpc.Pong")
        await client.call("w1", PeerEcho(text="t"))
        seen = []
        with trio.fail_after(5):
            while len(seen) < 2:
                ev = await sub.receive()
                seen.append((ev.topic, ev.sender, ev.to, ev.envelope.reply, ev.body))
    assert seen == [("bus.rpc.PeerEcho", "client", "w1", False, PeerEcho(text="t")),
                    ("bus.rpc.PeerEcho", "w1", "client", True, PeerEcho(text="t!"))]


async def test_a_silent_node_is_declared_down_and_a_new_one_up(bus, nursery):
    watcher = await start_peer(nursery, bus, "watcher")
    with watcher.subscribe("node.", "probe.") as sub:    # one socket: both prefixes at once
        await until_subscribed(lambda t: watcher.publish(t, PeerTick(n=0)), sub, "probe.x")
        with trio.CancelScope() as crash:
            async with trio.open_nursery() as n:
                victim = Peer(name="victim", role="worker", cfg=bus)
                await n.start(victim.run)
                victim.notify = _silence             # a crash sends no Goodbye
                crash.cancel()
        seen = []
        with trio.fail_after(5):
            while len(seen) < 2:
                ev = await sub.receive()
                seen.append(ev.body)
    assert isinstance(seen[0], NodeUp) and seen[0].node.node_id == "victim"
    assert seen[1] == NodeDown(node_id="victim", role="worker", reason="silent")
    nodes = {n.node_id: n.state for n in (await watcher.call(HUB, ListNodes())).nodes}
    assert nodes["victim"] == "down"


async def _silence(*args, **kwargs):
    pass


async def test_peers_reregister_when_the_hub_restarts(transport, tmp_path, nursery, free_bus_address):
    cfg = settings(address(transport, tmp_path, tcp=free_bus_address()), call_timeout_s=2.0)
    with trio.CancelScope() as first:
        async with trio.open_nursery() as hub_nursery:
            await hub_nursery.start(make_hub(cfg).run)
            nursery.start_soon(lambda: trio.sleep_forever())
            await start_peer(nursery, cfg, "w1", PeerEcho=echo)
            client = await start_peer(nursery, cfg, "client")
            assert await client.call("w1", PeerEcho(text="a")) == PeerEcho(text="a!")
            first.cancel()
    await trio.sleep(0.5)                             # both notice the hub is gone
    await nursery.start(make_hub(cfg).run)
    with trio.fail_after(10):
        while True:
            nodes = {n.node_id for n in (await client.call(HUB, ListNodes())).nodes}
            if {"w1", "client"} <= nodes and client.registrations >= 2:
                break
            await trio.sleep(0.1)
    assert await client.call("w1", PeerEcho(text="b")) == PeerEcho(text="b!")


async def test_the_memory_bus_runs_under_a_mock_clock(autojump_clock, nursery):
    cfg = settings(f"mem://mock-{next(_names)}", heartbeat_s=1.0, liveness=3)
    await nursery.start(MemoryHub(cfg).run)
    watcher = await start_peer(nursery, cfg, "watcher")
    await start_peer(nursery, cfg, "w1", PeerEcho=echo)
    t0 = trio.current_time()
    await trio.sleep(3600)                            # an hour of heartbeats, instantly
    assert trio.current_time() - t0 == 3600
    listing = await watcher.call(HUB, ListNodes())
    assert {n.node_id: n.state for n in listing.nodes} == {"watcher": "up", "w1": "up"}
    assert await watcher.call("w1", PeerEcho(text="m")) == PeerEcho(text="m!")
