"""Bus speed against plain blocking pyzmq in the same topology, measured in one run.

RPC: client -> hub -> server -> hub -> client round trips over tcp loopback; each party
is its own process. Baseline: blocking DEALERs and a minimal blocking ROUTER relay.
Events: publisher -> hub -> subscriber, ~100-byte events. Baseline: blocking PUB/SUB
through libzmq's own XSUB/XPUB proxy (C, no Python per event); ours stamps every event
with the publisher's identity in Python (the sender's key against its registered name)
and drops what fails, so the difference is the peers' side and the stamping.

    python tools/bench_bus.py [--json] [--calls 3000] [--events 200000] [--rounds 3]
                              [--security none|curve]

--security curve runs both sides with CurveZMQ (our hub with its ZAP allow-list, the
baseline with plain curve sockets); none (the default) compares unencrypted sockets.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time

PAYLOAD = b"x" * 64          # with topic and envelope, ~100 bytes on the wire
NAMES = ("server", "client", "publisher", "subscriber")


def _keys() -> str | None:
    """The key directory of a curve run (inherited by spawned processes), else None."""
    return os.environ.get("BENCH_BUS_KEYS") or None


def _curve(sock, role: str) -> None:
    """Baseline sockets: plain CurveZMQ with the same keys, no ZAP."""
    base = _keys()
    if base is None:
        return
    from zqnode.bus import keys
    hub_pub, hub_sec = keys.read_key_pair(os.path.join(base, "hub"))
    if role == "server":
        sock.curve_server = True
        sock.curve_secretkey = hub_sec
    else:
        pub, sec = keys.read_key_pair(os.path.join(base, "server"))
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = hub_pub, pub, sec


def _port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- baseline: blocking pyzmq ----------------------------------------------------------
def base_relay(addr: str) -> None:
    import zmq
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.ROUTER_MANDATORY, 1)
    _curve(r, "server")
    r.bind(addr)
    while True:
        frm, to, *rest = r.recv_multipart()
        try:
            r.send_multipart([to, frm, *rest])
        except zmq.ZMQError:          # the server not connected yet: the client retries
            pass


def base_server(addr: str) -> None:
    import zmq
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.IDENTITY, b"server")
    _curve(d, "client")
    d.connect(addr)
    while True:
        frm, payload = d.recv_multipart()
        d.send_multipart([frm, payload])


def base_rpc(addr: str, calls: int) -> list[float]:
    import zmq
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.IDENTITY, b"client")
    d.setsockopt(zmq.RCVTIMEO, 200)
    _curve(d, "client")
    d.connect(addr)
    while True:                       # until the server is connected through the relay
        d.send_multipart([b"server", PAYLOAD])
        try:
            d.recv_multipart()
            break
        except zmq.Again:
            pass
    d.setsockopt(zmq.RCVTIMEO, -1)
    out = []
    for i in range(calls + 200):
        t0 = time.perf_counter()
        d.send_multipart([b"server", PAYLOAD])
        d.recv_multipart()
        if i >= 200:                          # warm-up excluded
            out.append(time.perf_counter() - t0)
    return out


def base_proxy(addr_in: str, addr_out: str) -> None:
    import zmq
    ctx = zmq.Context()
    xs, xp = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    _curve(xs, "server")
    _curve(xp, "server")
    xs.bind(addr_in)
    xp.bind(addr_out)
    zmq.proxy(xs, xp)


def base_publisher(addr_in: str, n: int) -> None:
    import zmq
    ctx = zmq.Context()
    p = ctx.socket(zmq.PUB)
    _curve(p, "client")
    p.connect(addr_in)
    time.sleep(0.5)
    for i in range(n):
        p.send_multipart([b"bench.event", PAYLOAD + i.to_bytes(8, "little")])
    time.sleep(1)


def base_subscribe(addr_out: str, addr_in: str, n: int) -> tuple[int, float]:
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.SUBSCRIBE, b"bench.")
    s.setsockopt(zmq.RCVTIMEO, 2000)
    _curve(s, "client")
    s.connect(addr_out)
    time.sleep(0.3)
    pub = mp.get_context("spawn").Process(target=base_publisher, args=(addr_in, n), daemon=True)
    pub.start()
    got, t0, t1 = 0, None, None
    while got < n:
        try:
            s.recv_multipart()
        except zmq.Again:
            break
        t1 = time.perf_counter()
        t0 = t0 or t1
        got += 1
    pub.join()
    return got, (t1 - t0) if got > 1 else float("nan")


# -- zqnode ---------------------------------------------------------------------------
def _cfg(addr, name="hub"):
    from zqnode.bus.config import BusConfig
    base = _keys()
    if base is None:
        return BusConfig(address=addr, security="none")
    return BusConfig(address=addr, security="curve", key_dir=os.path.join(base, name))


def our_hub(addr: str) -> None:
    import trio
    from zqnode.bus.hub import ZmqHub
    trio.run(ZmqHub(_cfg(addr)).run)


def our_server(addr: str) -> None:
    import trio
    from zqnode.bus.peer import Peer

    async def main():
        peer = Peer(name="server", role="bench", cfg=_cfg(addr, "server"))
        await peer.run()
    trio.run(main)


def our_rpc(addr: str, calls: int) -> list[float]:
    import trio
    from zqnode.bus.peer import Peer
    from zqnode.bus.protocol import Ping

    async def main():
        out = []
        peer = Peer(name="client", role="bench", cfg=_cfg(addr, "client"))
        async with trio.open_nursery() as n:
            await n.start(peer.run)
            for i in range(calls + 200):
                t0 = time.perf_counter()
                await peer.call("server", Ping())
                if i >= 200:
                    out.append(time.perf_counter() - t0)
            n.cancel_scope.cancel()
        return out
    return trio.run(main)


def our_publisher(addr: str, n: int) -> None:
    import trio
    from zqnode.bus.peer import Peer
    from zqnode.bus.codec import Msg

    class BenchEvent(Msg):
        data: bytes

    async def main():
        peer = Peer(name="publisher", role="bench", cfg=_cfg(addr, "publisher"))
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            await trio.sleep(0.5)
            for i in range(n):
                await peer.publish("bench.event", BenchEvent(data=PAYLOAD[:40]))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    trio.run(main)


def our_subscribe(addr: str, n: int) -> tuple[int, float]:
    import trio
    from zqnode.bus.peer import Peer

    async def main():
        peer = Peer(name="subscriber", role="bench", cfg=_cfg(addr, "subscriber"))
        got, t0, t1 = 0, None, None
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            with peer.subscribe("bench.", raw=True) as sub:
                await trio.sleep(0.3)
                pub = mp.get_context("spawn").Process(target=our_publisher, args=(addr, n), daemon=True)
                pub.start()
                with trio.CancelScope() as cs:
                    async def watchdog():          # stop once events stop coming
                        seen = -1
                        while seen != got:
                            seen = got
                            await trio.sleep(3)
                        cs.cancel()
                    nursery.start_soon(watchdog)
                    async for _ in sub:
                        t1 = time.perf_counter()
                        t0 = t0 or t1
                        got += 1
                        if got == n:
                            break
                pub.join()
            nursery.cancel_scope.cancel()
        return got, (t1 - t0) if got > 1 else float("nan")
    return trio.run(main)


def _spawn(target, *args):
    p = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    p.start()
    return p


def _pct(xs, q) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e6


def rpc_round(calls: int, ours: bool) -> tuple[float, float, float]:
    """(p50, p99, mean) in microseconds for one side."""
    addr = f"tcp://127.0.0.1:{_port()}"
    if ours:
        procs = [_spawn(our_hub, addr)]
        time.sleep(0.5)
        procs.append(_spawn(our_server, addr))
        time.sleep(0.5)
        lat = our_rpc(addr, calls)
    else:
        procs = [_spawn(base_relay, addr), _spawn(base_server, addr)]
        lat = base_rpc(addr, calls)
    for p in procs:
        p.kill()
    return _pct(lat, 0.50), _pct(lat, 0.99), statistics.mean(lat) * 1e6


def events_round(events: int, ours: bool) -> tuple[int, float]:
    """(events received, events per second) for one side."""
    if ours:
        addr = f"tcp://127.0.0.1:{_port()}"
        hub = _spawn(our_hub, addr)
        time.sleep(0.5)
        got, dt = our_subscribe(addr, events)
    else:
        a_in, a_out = f"tcp://127.0.0.1:{_port()}", f"tcp://127.0.0.1:{_port()}"
        hub = _spawn(base_proxy, a_in, a_out)
        time.sleep(0.3)
        got, dt = base_subscribe(a_out, a_in, events)
    hub.kill()
    return got, (got / dt if dt == dt else 0.0)


def measure(calls: int, events: int, rounds: int = 3) -> dict:
    """Both sides `rounds` times, alternating which goes first, so that drift in the
    machine's load hits both alike; medians of every figure, ratios of the medians."""
    figs: dict[str, list[float]] = {}

    def add(key, value):
        figs.setdefault(key, []).append(value)
    for r in range(rounds):
        for ours in ((True, False) if r % 2 == 0 else (False, True)):
            tag = "" if ours else "_baseline"
            p50, p99, mean = rpc_round(calls, ours)
            add("rpc_p50_us" + tag, p50)
            add("rpc_p99_us" + tag, p99)
            add("rpc_mean_us" + tag, mean)
            got, rate = events_round(events, ours)
            add("events_received" + tag, got)
            add("events_per_s" + tag, rate)
    res = {k: round(statistics.median(v), 1) for k, v in figs.items()}
    res["events_per_s"] = round(res["events_per_s"])
    res["events_per_s_baseline"] = round(res["events_per_s_baseline"])
    res.update(rpc_calls=calls, rounds=rounds, cpus=os.cpu_count(),
               events_ratio=round(res["events_per_s"] / max(res["events_per_s_baseline"], 1), 3),
               rpc_p50_ratio=round(res["rpc_p50_us"] / res["rpc_p50_us_baseline"], 3),
               rpc_p99_ratio=round(res["rpc_p99_us"] / res["rpc_p99_us_baseline"], 3),
               spread={k: [round(x, 1) for x in v] for k, v in figs.items()
                       if k.startswith(("rpc_p50", "events_per_s"))})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--security", choices=("none", "curve"), default="none")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both sides; medians are reported")
    a = ap.parse_args()
    if a.security == "curve":
        import tempfile
        from zqnode.bus import keys
        base = tempfile.mkdtemp(prefix="bench-bus-keys-")
        keys.provision(os.path.join(base, "hub"),
                       [(os.path.join(base, n), "bench", n) for n in NAMES])
        os.environ["BENCH_BUS_KEYS"] = base
    res = measure(a.calls, a.events, a.rounds)
    res["security"] = a.security
    if a.json:
        print(json.dumps(res))
        return
    print(f"{'measure':<22} {'zqnode':>12} {'pyzmq':>12} {'ratio':>7}")
    print(f"{'RPC p50 (us)':<22} {res['rpc_p50_us']:>12} {res['rpc_p50_us_baseline']:>12} {res['rpc_p50_ratio']:>7}")
    print(f"{'RPC p99 (us)':<22} {res['rpc_p99_us']:>12} {res['rpc_p99_us_baseline']:>12} {res['rpc_p99_ratio']:>7}")
    print(f"{'events/s':<22} {res['events_per_s']:>12} {res['events_per_s_baseline']:>12} {res['events_ratio']:>7}")


if __name__ == "__main__":
    main()
