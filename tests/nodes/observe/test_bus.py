"""A peer's and the hub's traffic, counted from the frames, on the in-memory bus."""
import itertools

import pytest
import trio

from zqnode.bus.codec import Msg, encode_envelope
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import CallTimeout, Peer, Refused
from zqnode.nodes.observe import catalog as K
from zqnode.nodes.observe import logs
from zqnode.nodes.observe.bus import instrument_hub, instrument_peer, kind_of

_names = itertools.count()


class ObsAsk(Msg):
    text: str = ""


class ObsAnswer(Msg):
    cause: str


class ObsNews(Msg):
    n: int


class ObsAVeryLongMessageKindNameOverThirtyOneCharacters(Msg):
    pass


def test_the_kind_is_read_from_the_envelope_bytes():
    assert kind_of(encode_envelope("w1", ObsAsk(text="kind"))) == b"ObsAsk"
    long = ObsAVeryLongMessageKindNameOverThirtyOneCharacters()
    assert kind_of(encode_envelope("w1", long)) == type(long).__name__.encode()   # str8
    assert kind_of(b"not an envelope") == b"?"


def value(family, *labels) -> float:
    child = family.children.get(tuple(labels))
    return 0 if child is None else (child.count if hasattr(child, "count") else child.value)


async def test_messages_bytes_latency_and_cause(nursery, autojump_clock):
    n = next(_names)
    hub = MemoryHub(BusConfig(address=f"mem://obs-{n}"))
    hub_traffic = instrument_hub(hub, f"obshub{n}")
    address = await nursery.start(hub.run)
    server = Peer(name=f"srv{n}", role="obs", cfg=BusConfig(address=address))

    async def answer(req):
        if req.body.text == "refuse":
            raise Refused("invalid", "no")
        if req.body.text == "slow":
            await trio.sleep(10)
        return ObsAnswer(cause=logs.CAUSE.get())       # the handler's task carries the cause

    server.on(ObsAsk, answer)
    instrument_peer(server)
    client = Peer(name=f"cli{n}", role="obs", cfg=BusConfig(address=address))
    traffic = instrument_peer(client)
    await nursery.start(server.run)
    await nursery.start(client.run)

    with client.subscribe("obs.", kinds=[ObsNews]) as sub:
        reply = await client.call(f"srv{n}", ObsAsk(text="hi"), cause="s-1000-7")
        assert reply.cause == "s-1000-7"
        with pytest.raises(Exception, match="no"):
            await client.call(f"srv{n}", ObsAsk(text="refuse"))
        with pytest.raises(CallTimeout):
            await client.call(f"srv{n}", ObsAsk(text="slow"), timeout=1)
        await server.publish("obs.news", ObsNews(n=1))
        await server.publish("obs.news", ObsNews(n=2))
        assert [(await sub.receive()).body.n for _ in range(2)] == [1, 2]

    asks = traffic.rpc_out[b"ObsAsk"]
    assert asks[0] == 3
    sizes = [len(f"srv{n}") + len(encode_envelope(f"cli{n}", ObsAsk(text=t), id=1 << 52))
             for t in ("hi", "refuse", "slow")]
    assert abs(asks[1] - sum(sizes)) <= 3 * 8      # request ids vary in their msgpack width
    assert traffic.event_in[b"ObsNews"][0] == 2
    assert traffic.rpc_in[b"ObsAnswer"][0] == 1 and traffic.rpc_in[b"Error"][0] == 1
    assert hub_traffic.rpc_in[b"ObsAsk"][0] == 3
    assert hub_traffic.rpc_in[b"ObsAsk"][1] == asks[1] + 3 * len(f"cli{n}")   # + the route frame
    assert server.meter.traffic.event_out[b"ObsNews"][0] == 2

    assert value(K.RPC_SECONDS, f"cli{n}", "ObsAsk", "ok") == 1
    assert value(K.RPC_SECONDS, f"cli{n}", "ObsAsk", "error") == 1
    assert value(K.RPC_SECONDS, f"cli{n}", "ObsAsk", "timeout") == 1
    assert value(K.HANDLER_SECONDS, f"srv{n}", "ObsAsk", "ok") == 1
    assert value(K.HANDLER_SECONDS, f"srv{n}", "ObsAsk", "refused") == 1

    K.REGISTRY.collect()
    assert value(K.BUS_MESSAGES, f"cli{n}", "rpc", "out", "ObsAsk") == 3
    assert value(K.BUS_BYTES, f"cli{n}", "rpc", "out", "ObsAsk") == asks[1]
    assert value(K.BUS_MESSAGES, f"obshub{n}", "rpc", "in", "ObsAsk") == 3
    assert value(K.BUS_REGISTRATIONS, f"cli{n}") == 1
    assert value(K.NODE_INFO, f"srv{n}", "obs") == 1


def test_instrumenting_twice_is_harmless():
    peer = Peer(name="twice", role="obs", cfg=BusConfig(address="mem://nowhere"))
    first = instrument_peer(peer)
    meter = peer.meter
    assert instrument_peer(peer) is first and peer.meter is meter
