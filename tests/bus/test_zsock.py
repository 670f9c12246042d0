"""Stress tests of the Trio adapter for pyzmq: every message arrives exactly once,
whatever the transport, the high-water marks, the concurrency or the cancellations."""
import collections
import itertools

import pytest
import trio
import zmq

from zqnode.bus.zsock import ZSocket

_ports = itertools.count(0)


@pytest.fixture(params=["inproc", "ipc", "tcp"])
def endpoint(request, tmp_path):
    n = next(_ports)
    if request.param == "inproc":
        return f"inproc://zsock-{n}"
    if request.param == "ipc":
        return f"ipc://{tmp_path}/zsock-{n}.sock"
    return "tcp://127.0.0.1:*"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def pair(ctx, endpoint, kinds=(zmq.PULL, zmq.PUSH), hwm=1000):
    a, b = ctx.socket(kinds[0]), ctx.socket(kinds[1])
    for s in (a, b):
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
        s.setsockopt(zmq.LINGER, 0)
    a.bind(endpoint)
    b.connect(a.getsockopt(zmq.LAST_ENDPOINT).decode())
    return a, b


@pytest.mark.parametrize("hwm", [1, 1000])
async def test_concurrent_senders_no_loss_no_duplicates(ctx, endpoint, hwm):
    pull, push = pair(ctx, endpoint, hwm=hwm)
    senders, per_sender = 8, 400
    seen = collections.Counter()
    async with ZSocket(pull, inbox_limit=16, batch=8).running() as rx, ZSocket(push).running() as tx:
        async def send_all(s):
            for i in range(per_sender):
                await tx.send([b"%d" % s, b"%d" % i, b"x" * (i % 50)])

        async with trio.open_nursery() as n:
            for s in range(senders):
                n.start_soon(send_all, s)
            got = 0
            while got < senders * per_sender:
                for msg in await rx.recv_batch():
                    assert len(msg) == 3 and msg[2] == b"x" * (int(msg[1]) % 50)
                    seen[(msg[0], msg[1])] += 1
                    got += 1
    assert len(seen) == senders * per_sender
    assert set(seen.values()) == {1}


async def test_per_sender_order_is_kept(ctx, endpoint):
    pull, push = pair(ctx, endpoint, hwm=2)
    async with ZSocket(pull, inbox_limit=4).running() as rx, ZSocket(push).running() as tx:
        async with trio.open_nursery() as n:
            async def sender():
                for i in range(2000):
                    await tx.send([b"%d" % i])
            n.start_soon(sender)
            got = []
            while len(got) < 2000:
                got += [int(m[0]) for m in await rx.recv_batch(7)]
    assert got == list(range(2000))


async def test_concurrent_receivers_share_without_duplicates(ctx, endpoint):
    pull, push = pair(ctx, endpoint, hwm=4)
    total = 3000
    seen = []
    async with ZSocket(pull, inbox_limit=8).running() as rx, ZSocket(push).running() as tx:
        async with trio.open_nursery() as n:
            async def receiver():
                while True:
                    for m in await rx.recv_batch(3):
                        seen.append(int(m[0]))
                    await trio.sleep(0)

            for _ in range(4):
                n.start_soon(receiver)
            for i in range(total):
                await tx.send([b"%d" % i])
            while len(seen) < total:
                await trio.sleep(0.01)
            n.cancel_scope.cancel()
    assert sorted(seen) == list(range(total))


async def test_router_dealer_round_trips(ctx, endpoint):
    router, dealer = pair(ctx, endpoint, kinds=(zmq.ROUTER, zmq.DEALER), hwm=1)
    async with ZSocket(router).running() as r, ZSocket(dealer).running() as d:
        async with trio.open_nursery() as n:
            async def echo():
                while True:
                    for ident, payload in await r.recv_batch():
                        await r.send([ident, payload + b"!"])
            n.start_soon(echo)
            for i in range(500):
                await d.send([b"%d" % i])
                assert await d.recv() == [b"%d!" % i]
            n.cancel_scope.cancel()


async def test_close_while_waiting_wakes_receiver_and_sender(ctx, endpoint):
    pull, push = pair(ctx, endpoint, hwm=1)
    rx, tx = ZSocket(pull), ZSocket(push)
    outcomes = {}
    async with trio.open_nursery() as n:
        await n.start(rx.run)
        await n.start(tx.run)

        async def blocked_recv():
            with pytest.raises(trio.ClosedResourceError):
                await rx.recv()
            outcomes["recv"] = "closed"

        async def blocked_send():
            # nobody reads: the queue fills (HWM 1 each side) and send must park
            with pytest.raises(trio.ClosedResourceError):
                for i in range(100):
                    await tx.send([b"%d" % i])
            outcomes["send"] = "closed"

        n.start_soon(blocked_recv)
        await trio.sleep(0.05)
        pull.setsockopt(zmq.RCVHWM, 1)
        rx.close()
        n.start_soon(blocked_send)
        await trio.sleep(0.2)
        tx.close()
    assert outcomes == {"recv": "closed", "send": "closed"}


async def test_cancelled_send_is_all_or_nothing(ctx, endpoint):
    pull, push = pair(ctx, endpoint, hwm=1)
    async with ZSocket(pull, inbox_limit=1, batch=1).running() as rx, ZSocket(push).running() as tx:
        sent = []
        big = b"x" * (256 << 10)   # big enough to fill kernel buffers too (ipc, tcp)
        # Fill the pipe without reading, with cancellations landing on parked sends.
        for i in range(50):
            with trio.move_on_after(0.005):
                await tx.send([b"a%d" % i, big + b"%d" % i])
                sent.append(i)
        got = []
        while len(got) < len(sent):
            with trio.fail_after(5):
                got += await rx.recv_batch()
        with trio.move_on_after(0.2):   # nothing beyond what send() reported as sent
            got += await rx.recv_batch()
    assert got == [[b"a%d" % i, big + b"%d" % i] for i in sent]
    assert len(sent) < 50                # some sends really were cancelled while parked


async def test_cancelled_receiver_loses_nothing(ctx, endpoint):
    pull, push = pair(ctx, endpoint)
    async with ZSocket(pull).running() as rx, ZSocket(push).running() as tx:
        got = []
        for i in range(200):
            await tx.send([b"%d" % i])
            if i % 3 == 0:
                with trio.move_on_after(0):    # cancelled before it can run
                    got += await rx.recv_batch(1)
        while len(got) < 200:
            got += await rx.recv_batch()
    assert [int(m[0]) for m in got] == list(range(200))


async def test_closed_socket_refuses_work(ctx):
    pull, push = pair(ctx, "inproc://closed-refuses")
    tx = ZSocket(push)
    tx.close()
    with pytest.raises(trio.ClosedResourceError):
        await tx.send([b"x"])
    with pytest.raises(trio.ClosedResourceError):
        tx.send_nowait([b"x"])
    pull.close()
