"""Fuzzing: every decoder, the hub's router and a serving node, with random and mutated
frames. A decoder raises only BadMessage; the hub and the node keep serving, their
memory stays bounded, and the sender of bad input gets a typed error.

The manager role is being built elsewhere: `Manager` below (a Peer with several
handlers and the permission table a manager would declare) stands in for it.
"""
import random
import socket
import tracemalloc

import msgspec
import trio
from hypothesis import HealthCheck, given, settings, strategies as st

import zqnode.nodes.wire.chain  # noqa: F401  (registers the chain's message kinds too)
from zqnode.bus import keys
from zqnode.bus.codec import (BadMessage, Envelope, Error, ErrorCode, Msg, any_decoder, decode_envelope, encode_envelope,
                              event_frames, peek_kind, split_event, to_plain)
from zqnode.bus.config import BusConfig
from zqnode.bus.hub import Router, ZmqHub, _hub_requests
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer, open_link
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.protocol import HUB, ListNodes, Ping, Pong, Register


class FuzzAbortJob(Msg):
    job: str


class FuzzReportStatus(Msg):
    text: str


class FuzzSectorInfo(Msg):
    sector: int


class FuzzDone(Msg):
    who: str
    role: str


class Manager:
    """A manager-like node: several handlers and a manager's kind of permission table."""

    def __init__(self, cfg: BusConfig):
        self.ran: list[tuple[str, str, str]] = []
        self.peer = Peer(name="manager-1", role="manager", cfg=cfg, permissions={
            FuzzAbortJob: ADMIN, FuzzReportStatus: "worker", FuzzSectorInfo: ANYONE})
        for kind in (FuzzAbortJob, FuzzReportStatus, FuzzSectorInfo):
            self.peer.on(kind, self.handle)

    async def handle(self, req):
        self.ran.append((type(req.body).__name__, req.sender, req.role))
        return FuzzDone(who=req.sender, role=req.role)

_enc = msgspec.msgpack.Encoder()

# -- plain msgpack values, and bodies shaped like the registered kinds ------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
                    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def bodies(draw):
    """A dict tagged with a real kind (or a made-up one), with real or random fields."""
    kinds = sorted(Msg.registry)
    kind = draw(st.one_of(st.sampled_from(kinds), st.text(max_size=12)))
    cls = Msg.registry.get(kind)
    fields = list(cls.__struct_fields__) if cls is not None else []
    body = {f: draw(values) for f in fields if draw(st.booleans())}
    body.update(draw(st.dictionaries(st.text(max_size=8), values, max_size=2)))
    body["kind"] = kind
    return _enc.encode(draw(st.one_of(st.just(body), values)))


@st.composite
def hostile(draw):
    """msgpack a hostile peer would write: nesting thousands deep (msgspec raises
    RecursionError for it, even inside a Raw field it only skips), lengths declared huge
    with few bytes behind them, and arrays of every type mixed."""
    shape = draw(st.sampled_from(["nest", "huge", "mixed"]))
    if shape == "nest":
        opener = draw(st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01", b"\x92\xc0"]))
        return opener * draw(st.integers(50, 20_000)) + b"\xc0"
    if shape == "huge":
        head = draw(st.sampled_from([b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9\x01", b"\xdc"]))
        size = draw(st.integers(1 << 16, (1 << 32) - 1)).to_bytes(4, "big")
        return head + size[-2:] if head == b"\xdc" else head + size + draw(st.binary(max_size=16))
    return _enc.encode(draw(st.lists(st.one_of(scalars, st.lists(scalars, max_size=3),
                                               st.dictionaries(scalars.filter(lambda v: v is not None
                                                                              and not isinstance(v, float)),
                                                               scalars, max_size=3)),
                                     max_size=10)))


def envelopes_around(body: bytes) -> list[bytes]:
    """`body` as a whole envelope frame, as an envelope's body, and as its sender."""
    return [body, encode_envelope("x", msgspec.Raw(body), id=7),
            b"\x97" + body + b"\xc0\x07\xc2\x00\xa0\x00"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.6 and b:
            del b[rng.randrange(len(b)):]
        elif op < 0.8:
            b[rng.randrange(len(b) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            b += b[: rng.randint(0, len(b))]
    return bytes(b)


# -- the decoders -----------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_envelope_decoder_raises_only_bad_message(data):
    try:
        env = decode_envelope(data)
    except BadMessage as e:
        assert e.code == ErrorCode.BAD_FRAMES and e.message.startswith("not an envelope")
        return
    assert isinstance(env.sender, str) and isinstance(env.id, int)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 1 << 32), st.randoms(use_true_random=False))
def test_mutated_envelopes_decode_or_are_refused(body, rid, rng):
    frame = mutate(encode_envelope("x", msgspec.Raw(_enc.encode({"kind": "Ping"})), id=rid), rng)
    try:
        decode_envelope(frame)
    except BadMessage:
        pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.randoms(use_true_random=False), st.booleans())
def test_body_decoders_raise_only_bad_message(body, rng, mutated):
    if mutated:
        body = mutate(body, rng)
    env = Envelope("x", msgspec.Raw(body))        # a body that is not msgpack cannot be framed
    for decoder in (any_decoder(), _hub_requests):
        try:
            msg = decoder.decode(env)
        except BadMessage as e:
            assert e.code in (ErrorCode.BAD_FRAMES, ErrorCode.UNKNOWN_KIND, ErrorCode.INVALID)
            assert e.envelope is env and e.message
        else:
            assert type(msg) in decoder.kinds
    peek_kind(body)
    to_plain(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile())
def test_hostile_msgpack_gets_a_typed_error_from_every_decoder(body):
    for frame in envelopes_around(body):
        try:
            env = decode_envelope(frame)
        except BadMessage as e:
            assert e.code == ErrorCode.BAD_FRAMES
            continue
        for decoder in (any_decoder(), _hub_requests):
            try:
                decoder.decode(env)
            except BadMessage as e:
                assert e.code in (ErrorCode.BAD_FRAMES, ErrorCode.UNKNOWN_KIND, ErrorCode.INVALID)
    peek_kind(body)
    to_plain(body)


def test_every_registered_kind_round_trips_through_the_all_kinds_decoder():
    decoder = any_decoder()
    assert len(decoder.kinds) == len(Msg.registry) > 30
    ping = decode_envelope(encode_envelope("x", Ping()))
    assert decoder.decode(ping) == Ping()


# -- the router, without sockets ------------------------------------------------------
class RecordingRouter(Router):
    def __init__(self):
        super().__init__(BusConfig(address="mem://fuzz", max_envelope_bytes=4096, max_message_bytes=1 << 16))
        self.start_core("mem://fuzz.in", "mem://fuzz.out")
        self.out: list[tuple[bytes, list]] = []

    def deliver(self, identity, frames):
        self.out.append((identity, frames))

    def emit(self, frames):
        pass


frame_lists = st.lists(st.one_of(st.binary(max_size=64), bodies(),
                                 st.sampled_from([b"hub", b"@worker", b"w1", b"", b"\xff\xfe"])),
                       min_size=0, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame_lists, st.binary(min_size=1, max_size=8), st.booleans())
def test_the_router_answers_any_frames_without_raising(frames, sender, wrap):
    async def main():
        r = RecordingRouter()
        msg = [sender, *frames]
        if wrap and len(frames) >= 2:                 # a real envelope around a fuzzed body
            msg = [sender, frames[0], encode_envelope("x", msgspec.Raw(frames[1] or b"\xc0"), id=3),
                   *frames[2:]]
        r.route(msg)
        for identity, out in r.out:                 # everything goes to the sender or a target
            assert len(out) >= 4 and out[0] == identity
            if identity == sender and out[1] == b"hub":
                env = decode_envelope(out[3])
                assert env.reply
    trio.run(main)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile(), st.booleans())
def test_the_router_answers_hostile_msgpack_and_forwards_no_event_of_it(body, registered):
    async def main():
        r = RecordingRouter()
        emitted = []
        r.emit = emitted.append
        if registered:
            r.core.request("w1", Register(role="worker", name="w1", session="s"), 0.0)
        for frame in envelopes_around(body):
            r.route([b"w1", b"manager-1", frame])
            r.forward_event(None, event_frames(b"t.x", frame))
            r.forward_event(None, [frame])
        for frames in emitted:                  # only under its own name and role
            topic, sender, role, env = split_event(frames[0])
            assert (topic, sender, role) == (b"t.x", b"w1", b"worker")
    trio.run(main)


# -- a hub and a manager-like node under 10,000 fuzzed frames, over curve tcp -----------
def fuzz_frames(rng: random.Random, n: int, valid: bytes) -> list[list[bytes]]:
    routes = [b"manager-1", b"hub", b"@manager", b"@worker", b"nobody", b"~00", b"\xff", b"",
              b"~" + b"z" * 300]
    kinds = sorted(Msg.registry)
    out = []
    for i in range(n):
        r = rng.random()
        route = rng.choice(routes)
        if r < 0.25:                                   # junk frames
            frames = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
                      for _ in range(rng.randint(1, 4))]
        elif r < 0.5:                                  # a real request, mutated
            frames = [route, mutate(valid, rng)]
        elif r < 0.75:                                 # a real envelope, a made-up body
            kind = rng.choice(kinds + ["Nope", ""])
            body = {"kind": kind, rng.choice(["text", "job", "sector", "x"]): rng.choice([1, "a", None, [1]])}
            frames = [route, encode_envelope("evil", msgspec.Raw(_enc.encode(body)),
                                             id=rng.choice([0, i + 1, 1 << 63]),
                                             reply=rng.random() < 0.1)]
        elif r < 0.8:                                  # nesting, huge lengths, mixed arrays
            hostile_body = _hostile_bytes(rng)
            frames = [route, rng.choice(envelopes_around(hostile_body))]
        elif r < 0.9:                                  # valid requests, replayed ids
            frames = [b"manager-1", encode_envelope("evil", FuzzReportStatus(text="x"), id=rng.randint(1, 50))]
        else:                                          # registrations in others' names
            frames = [b"hub", encode_envelope("evil", Register(
                role=rng.choice(["worker", "manager", "admin"]), name=rng.choice(["manager-1", "w1", "~1"]),
                session="s"), id=i + 1)]
        if rng.random() < 0.1:
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 100))))
        out.append(frames)
    return out


def _hostile_bytes(rng: random.Random) -> bytes:
    shape = rng.random()
    if shape < 0.5:
        return rng.choice([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"]) * rng.randint(100, 20_000) + b"\xc0"
    if shape < 0.8:
        return rng.choice([b"\xdd", b"\xdf", b"\xdb", b"\xc6"]) + rng.randrange(1 << 16, 1 << 32).to_bytes(4, "big")
    return _enc.encode([rng.choice([1, "a", None, [1, {"k": b"x"}], 2.5, True, {1: 2}]) for _ in range(8)])


class Sink:
    """The fuzzer's link: counts the error codes it is answered with (keeps no frames,
    so the memory measured is the hub's and the node's), and spots a marker reply."""

    def __init__(self):
        self.codes: dict[str, int] = {}
        self.marker: int | None = None
        self.event = trio.Event()

    def on_rpc(self, batch):
        for frames in batch:
            env = decode_envelope(frames[2])          # the hub's framing: always well-formed
            if env.id == self.marker:
                self.marker = None
                self.event.set()
            if peek_kind(env.body) != "Error":
                continue
            try:
                code = msgspec.msgpack.decode(env.body, type=Error).code
            except msgspec.ValidationError:
                continue      # a fuzzed frame routed back to us (our key is a worker's too)
            self.codes[code] = self.codes.get(code, 0) + 1


async def test_ten_thousand_fuzzed_frames_leave_the_hub_and_a_node_serving(tmp_path, nursery):
    hub_dir, kw = tmp_path / "hub", dict(heartbeat_s=0.1, security="curve")
    keys.provision(hub_dir, [(str(tmp_path / name), role, name) for name, role in
                             [("manager-1", "manager"), ("w1", "worker"), ("evil", "worker")]])
    address = await nursery.start(ZmqHub(BusConfig(address="tcp://127.0.0.1:*", key_dir=str(hub_dir),
                                                   **kw)).run)

    def cfg(name):
        return BusConfig(address=address, key_dir=str(tmp_path / name), **kw)
    m = Manager(cfg("manager-1"))
    await nursery.start(m.peer.run)
    w1 = Peer(name="w1", role="worker", cfg=cfg("w1"))
    await nursery.start(w1.run)

    sink = Sink()
    rng = random.Random(20261122)
    valid = encode_envelope("evil", FuzzReportStatus(text="hello"), id=1)
    creds = keys.peer_credentials(cfg("evil"), "evil")
    async with open_link(address, "evil", cfg("evil"), None, sink.on_rpc, lambda b: None,
                         creds) as link:
        async def burst(n):
            for frames in fuzz_frames(rng, n, valid):
                await link.send(frames)
            # the burst is through once the answer to a marker request is back
            sink.marker = rng.randrange(1 << 40, 1 << 41)
            await link.send([b"manager-1", encode_envelope("evil", FuzzReportStatus(text="m"),
                                                           id=sink.marker)])
            with trio.fail_after(60):
                while sink.marker is not None:
                    sink.event = trio.Event()
                    await sink.event.wait()
        # raw bytes straight at the hub's port: not even a zmq greeting
        host, port = address[len("tcp://"):].rsplit(":", 1)
        for _ in range(20):
            with socket.create_connection((host, int(port))) as s:
                s.sendall(bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))))
        await link.send([b"hub", encode_envelope("evil", Register(role="worker", name="evil",
                                                                  session="s"), id=1)])
        await burst(2000)                            # warm up: caches, windows, log tables fill
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        await burst(10_000)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    codes = sink.codes
    assert {ErrorCode.BAD_FRAMES, ErrorCode.INVALID, ErrorCode.UNKNOWN_KIND, ErrorCode.NO_ROUTE,
            ErrorCode.PERMISSION, ErrorCode.REPLAY} <= set(codes), codes
    assert set(codes) <= {ErrorCode.BAD_FRAMES, ErrorCode.INVALID, ErrorCode.UNKNOWN_KIND,
                          ErrorCode.NO_ROUTE, ErrorCode.PERMISSION, ErrorCode.REPLAY, ErrorCode.BUSY,
                          ErrorCode.TOO_LARGE}, codes
    assert grown < 1 << 20, f"memory grew by {grown} bytes over 10,000 fuzzed frames"
    # still serving: the hub, the manager, and the registry is as it was
    assert await w1.call("manager-1", FuzzReportStatus(text="after")) == FuzzDone(who="w1", role="worker")
    assert await w1.call(HUB, Ping()) == Pong(node_id="hub", role="bus")
    listing = await w1.call(HUB, ListNodes())
    assert {(n.node_id, n.role) for n in listing.nodes} == {("manager-1", "manager"), ("w1", "worker"),
                                                            ("evil", "worker")}   # its own name only
    assert {n.node_id for n in listing.nodes if n.state == "up"} >= {"manager-1", "w1"}
    assert m.ran.count(("FuzzReportStatus", "w1", "worker")) == 1


# -- the same, in memory, driven by hypothesis ------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(frame_lists, min_size=1, max_size=20))
async def test_a_node_keeps_serving_whatever_arrives(batch):
    cfg = BusConfig(address=f"mem://fuzz-{random.getrandbits(64)}", heartbeat_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(MemoryHub(cfg).run)
        m = Manager(cfg)
        await nursery.start(m.peer.run)
        async with open_link(cfg.address, "raw", cfg, None, lambda b: None, lambda b: None) as link:
            for frames in batch:
                await link.send(frames)
        client = Peer(name="client", role="worker", cfg=cfg)
        await nursery.start(client.run)
        assert await client.call("manager-1", FuzzReportStatus(text="ok")) == FuzzDone(who="client", role="worker")
        nursery.cancel_scope.cancel()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(hostile(), min_size=1, max_size=8))
async def test_a_subscriber_keeps_taking_events_whatever_a_publisher_sends(bodies_):
    cfg = BusConfig(address=f"mem://fuzz-sub-{random.getrandbits(64)}", heartbeat_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(MemoryHub(cfg).run)
        pub = Peer(name="pub", role="worker", cfg=cfg)
        sub_peer = Peer(name="sub", role="manager", cfg=cfg)
        await nursery.start(pub.run)
        await nursery.start(sub_peer.run)
        with sub_peer.subscribe("t.", kinds=[FuzzSectorInfo]) as sub:
            for body in bodies_:
                for frame in envelopes_around(body):
                    await pub.link.publish(event_frames(b"t.x", frame))
                    await pub.link.publish([frame])
            await pub.publish("t.x", FuzzSectorInfo(sector=9))
            with trio.fail_after(5):
                ev = await sub.receive()
        assert ev.body == FuzzSectorInfo(sector=9) and (ev.sender, ev.role) == ("pub", "worker")
        nursery.cancel_scope.cancel()
