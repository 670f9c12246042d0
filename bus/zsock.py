"""pyzmq sockets driven by Trio.

A zmq socket's FD is edge-triggered: it signals that `zmq.EVENTS` may have changed,
and any operation on the socket (a send, a recv, reading EVENTS) can consume that
signal. So the rules are: re-read EVENTS after every operation, wait on the FD only
when the wanted direction is not ready, and let exactly one task wait on the FD.

Here that one task is `run()`, the socket's owner. It drains every ready message into
a bounded inbox in batches (per-message wake-ups are what make naive adapters slow),
and wakes senders parked on a full send queue when EVENTS says POLLOUT. Senders call
`send()` from any task on the Trio thread: the send itself is non-blocking, and
afterwards, if the owner is parked on the FD, it re-reads EVENTS itself (the send may
have consumed the edge the owner waits for) and wakes the owner only when input is
waiting: a wake-up costs far more than reading EVENTS. Send-only sockets (PUB, PUSH)
have no input to miss and skip even that. A full inbox stops draining, so back-pressure reaches the
zmq high-water marks instead of growing memory.

Where handling a message is synchronous (routing, matching a reply to its call), pass
`on_batch`: the owner calls it with each drained batch, saving a task switch per hop.
With `properties=("User-Id",)` each message comes as `(values, frames)`: the metadata
libzmq attached to its connection ("" for one it does not have), here the ZAP User-Id
(the curve key that passed the handshake), which is how the hub knows who sent what.
Each scheduler pass costs more than a message, so a sender yields once every
`YIELD_EVERY` sends rather than on each (it still parks at once when the queue is full).
"""
from __future__ import annotations

import functools
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Sequence

import trio
import zmq

Frames = list  # list[bytes | zmq.Frame]
YIELD_EVERY = 32
BATCH = 512          # messages the owner drains per scheduler pass

# pyzmq's constants are enum.IntFlag: every | and & on them runs Python enum code, which
# cost more than the zmq call itself on this hot path. Plain ints, computed once:
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


def _property(frame: zmq.Frame, name: str) -> str:
    """A connection's metadata property, "" when it has none (no ZAP user, a peer that
    declared nothing) or declared bytes that are not text."""
    try:
        return frame.get(name)
    except (zmq.ZMQError, UnicodeDecodeError):
        return ""


class ZSocket:
    """Owns one zmq socket. Use as `async with ZSocket(sock).running() as zs:` (starts
    the owner task, closes on exit) or start `zs.run` in a nursery yourself."""

    def __init__(self, sock: zmq.Socket, *, inbox_limit: int = 4096, batch: int = BATCH,
                 copy: bool = True, on_batch: Callable[[list[Frames]], None] | None = None,
                 properties: tuple[str, ...] = ()):
        self.sock = sock
        self._properties = properties
        self._recv_one = self._recv_with_properties if properties else self._recv
        self._on_batch = on_batch
        # EVENTS without pyzmq's wrapping of the answer in a PollEvent enum (hot path)
        self._events = functools.partial(zmq.backend.Socket.get, sock, _EVENTS)
        self._sends = 0
        self._receives = sock.type not in (zmq.PUB, zmq.PUSH)
        self._fd = sock.getsockopt(zmq.FD)
        self._inbox: deque[Frames] = deque()
        self._inbox_limit = inbox_limit
        self._batch = batch
        self._copy = copy
        self._readers = trio.lowlevel.ParkingLot()
        self._writers = trio.lowlevel.ParkingLot()
        self._wait_scope: trio.CancelScope | None = None
        self._closed = False

    # -- owner task -------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while not self._closed:
                ev = self._events()
                if ev & _POLLOUT and self._writers:
                    self._writers.unpark_all()
                if ev & _POLLIN and len(self._inbox) < self._inbox_limit:
                    if self._drain():
                        await trio.lowlevel.checkpoint()   # a full batch: consumers first
                    continue
                with trio.CancelScope() as self._wait_scope:
                    await trio.lowlevel.wait_readable(self._fd)
                self._wait_scope = None
        except (trio.ClosedResourceError, zmq.ZMQError):
            if not self._closed:
                raise
        finally:
            self._wait_scope = None
            self._wake_all()

    def _recv(self) -> Frames:
        """One whole multipart message, or zmq.Again."""
        recv, copy = self.sock.recv, self._copy
        f = recv(_NOBLOCK, copy=False)
        parts = [f.bytes if copy else f]
        while f.more:                       # the rest of a multipart message is already here
            f = recv(_NOBLOCK, copy=False)
            parts.append(f.bytes if copy else f)
        return parts

    def _recv_with_properties(self) -> tuple[tuple[str, ...], Frames]:
        recv, copy = self.sock.recv, self._copy
        f = recv(_NOBLOCK, copy=False)
        values = tuple(_property(f, name) for name in self._properties)
        parts = [f.bytes if copy else f]
        while f.more:
            f = recv(_NOBLOCK, copy=False)
            parts.append(f.bytes if copy else f)
        return values, parts

    def _drain(self) -> bool:
        """Receive what is ready, up to a batch; True when the batch filled (more may be
        waiting). After the first message, EVENTS says whether another is there (cheaper
        than a failed recv, and the usual RPC batch is one message); after the second,
        a failed recv ends the batch (cheaper than EVENTS per message)."""
        inbox = self._inbox
        limit = self._batch if self._on_batch is not None else \
            min(self._batch, self._inbox_limit - len(inbox))
        batch, recv = [], self._recv_one
        try:
            batch.append(recv())
            if self._events() & _POLLIN:
                while len(batch) < limit:
                    batch.append(recv())
        except zmq.Again:
            pass
        if self._on_batch is not None:
            if batch:
                self._on_batch(batch)
        else:
            inbox.extend(batch)
            if inbox and self._readers:
                self._readers.unpark_all()
        return len(batch) >= limit

    def _kick(self) -> None:
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _after_op(self) -> None:
        """An operation may have consumed the FD's edge a parked owner waits for: look
        at EVENTS for it. (A running owner re-reads EVENTS before it next waits.)"""
        if self._wait_scope is None or not (self._receives or self._writers):
            return
        ev = self._events()
        if ev & _POLLIN and self._receives and len(self._inbox) < self._inbox_limit:
            self._wait_scope.cancel()
        elif ev & _POLLOUT and self._writers:
            self._writers.unpark_all()

    def _wake_all(self) -> None:
        self._readers.unpark_all()
        self._writers.unpark_all()

    # -- receiving --------------------------------------------------------------
    async def recv(self) -> Frames:
        """The next message (a list of frames)."""
        return (await self.recv_batch(1))[0]

    async def recv_batch(self, max: int = 512) -> list[Frames]:
        """Every queued message, up to `max`, waiting for at least one."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._inbox:
            if self._closed:
                raise trio.ClosedResourceError("socket closed")
            await self._readers.park()
        inbox = self._inbox
        was_full = len(inbox) >= self._inbox_limit
        n = min(max, len(inbox))
        out = [inbox.popleft() for _ in range(n)]
        if was_full:
            self._kick()          # the owner stopped draining; there is room now
        await trio.lowlevel.cancel_shielded_checkpoint()
        return out

    # -- sending ----------------------------------------------------------------
    async def send(self, frames: Sequence) -> None:
        """Send one multipart message, waiting while the socket's queue is full.
        Cancellation leaves the message wholly unsent (zmq multipart is atomic)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("socket closed")
            try:
                self._send(frames)
                break
            except zmq.Again:
                self._kick()        # the failed attempt may have eaten an edge too
                await self._writers.park()
        self._after_op()
        self._sends += 1
        if self._sends % YIELD_EVERY == 0:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, frames: Sequence) -> None:
        """Send now or raise (zmq.Again when full; for a ROUTER with ROUTER_MANDATORY,
        ZMQError(EHOSTUNREACH) for an unknown peer). Never waits."""
        if self._closed:
            raise trio.ClosedResourceError("socket closed")
        try:
            self._send(frames)
        finally:
            self._after_op()

    def send_batch_nowait(self, batch: list) -> None:
        """send_nowait for each message, with one look at EVENTS after all of them
        (zmq.Again from the first that does not fit: the rest are not sent)."""
        if self._closed:
            raise trio.ClosedResourceError("socket closed")
        send = self._send
        try:
            for frames in batch:
                send(frames)
        finally:
            self._after_op()

    def _send(self, frames: Sequence) -> None:
        """All frames or none: zmq checks the high-water mark on the first frame only."""
        send, last = self.sock.send, len(frames) - 1
        for i, f in enumerate(frames):
            send(f, _NOBLOCK_MORE if i < last else _NOBLOCK)

    def setsockopt(self, option: int, value) -> None:
        """Set an option that may talk to peers (SUBSCRIBE does): also an operation."""
        self.sock.setsockopt(option, value)
        self._after_op()

    # -- closing ----------------------------------------------------------------
    def close(self, linger: int | None = None) -> None:
        """Close now: parked tasks get ClosedResourceError, the owner returns.
        Queued outbound messages get `linger` ms to leave (zmq's LINGER)."""
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        self.sock.close(linger=linger)
        self._wake_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def running(self) -> AsyncIterator["ZSocket"]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            finally:
                self.close()
