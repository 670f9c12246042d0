"""A client written from docs/protocol.md alone: blocking pyzmq and plain msgpack, none of
the bus package, against a real hub over ipc without keys. If the page's frames,
envelope or connecting rules drift from the hub, this fails."""
import time

import msgspec
import trio
import zmq

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub

NAME = b"doc-node"
pack, unpack = msgspec.msgpack.encode, msgspec.msgpack.decode


def doc_client(address: str) -> dict:
    """What the page says to do, step by step; returns what it saw."""
    ctx = zmq.Context()
    seen = {}
    try:
        rpc = ctx.socket(zmq.DEALER)
        rpc.setsockopt(zmq.IDENTITY, NAME)           # without keys: the routing id is the name
        rpc.connect(address)

        def call(route: bytes, envelope: list) -> list:
            """Send, then the reply with this id (the hub's own heartbeats come with id 0)."""
            rpc.send_multipart([route, pack(envelope)])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if rpc.poll(200):
                    sender, role, env, *_ = rpc.recv_multipart()
                    env = unpack(env)
                    if env[2] == envelope[2]:
                        return [sender, role, env]
                    seen.setdefault("unasked", []).append((sender, env[1]["kind"], env[2]))
            raise AssertionError(f"no reply to {envelope}")

        # trailing envelope fields (reply, seq, cause, ts) left out
        sender, role, env = call(b"hub", ["doc-node", {"kind": "Register", "role": "test",
                                                       "name": "doc-node", "session": "one"}, 1])
        seen["registered"] = (sender, env[1]["kind"], env[3])
        reg = env[1]
        rpc.send_multipart([b"hub", pack(["doc-node", {"kind": "Heartbeat"}])])   # one-way, id 0

        sub = ctx.socket(zmq.SUB)
        sub.connect(reg["events_out"])
        sub.setsockopt(zmq.SUBSCRIBE, b"doc.")
        pub = ctx.socket(zmq.PUB)
        pub.connect(reg["events_in"])
        deadline = time.monotonic() + 10
        while "event" not in seen and time.monotonic() < deadline:
            pub.send(b"doc.hello\0" + pack(["doc-node", {"kind": "Ping"}, 0, False, 1]))
            if sub.poll(200):
                frame = sub.recv()
                topic, stamped, role, envelope = frame.split(b"\0", 3)
                seen["event"] = (topic, stamped, role, unpack(envelope)[1]["kind"])

        _, _, env = call(b"hub", ["doc-node", {"kind": "Ping"}, 2])
        seen["pong"] = env[1]
        _, _, env = call(b"hub", [5, {"kind": "Ping"}, 3])        # sender not a str
        seen["bad"] = (env[1]["kind"], env[1]["code"], env[3])
        return seen
    finally:
        ctx.destroy(linger=0)


async def test_a_client_written_from_the_protocol_page_works(tmp_path, nursery):
    cfg = BusConfig(address=f"ipc://{tmp_path}/bus.sock", heartbeat_s=0.2, liveness=50)
    address = await nursery.start(ZmqHub(cfg).run)
    seen = await trio.to_thread.run_sync(doc_client, address)
    assert seen["registered"] == (b"hub", "Registered", True)
    assert seen["event"] == (b"doc.hello", NAME, b"test", "Ping")
    assert seen["pong"] == {"kind": "Pong", "node_id": "hub", "role": "bus"}
    assert seen["bad"] == ("Error", "bad_frames", True)          # answered with its id (3)
    assert ("hub", "Heartbeat", 0) in [(s.decode(), k, i) for s, k, i in seen.get("unasked", [])]
