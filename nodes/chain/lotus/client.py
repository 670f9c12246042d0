"""A Lotus API client over one websocket: calls by name with typed parameters and results
(lotus/methods.py), and channels (ChainNotify). The connection is the caller's: when it
drops, every call in flight and every channel raises LotusDisconnected, and the caller
connects again (the chain-watcher resyncs from a fresh ChainNotify).

    async with LotusClient.connect(url, token) as lotus:
        head = await lotus.call("ChainHead")
        async with lotus.channel("ChainNotify") as changes:
            async for batch in changes: ...
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Annotated, Any, AsyncIterator

import msgspec
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from zqnode.nodes.chain.lotus import rpc
from zqnode.nodes.chain.lotus.methods import METHODS
from zqnode.nodes.groups import unwrap

log = logging.getLogger("zqnode.chain.lotus")

CALL_TIMEOUT_S = 120.0
# trio-websocket waits 60 s by default; a node that closes the connection during the
# handshake (a proxy with nothing behind it) would hold the watcher that long
CONNECT_TIMEOUT_S = 10.0
CHANNEL_BUFFER = 16                 # values (each at most a frame) a consumer may lag
_CHANNEL_PARAMS = Annotated[list[msgspec.Raw], msgspec.Meta(max_length=2)]     # [channel id, value]


class LotusError(Exception):
    """The node answered with an error (its words in the message)."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"{method}: {message}")
        self.method, self.code, self.message = method, code, message


class LotusDisconnected(Exception):
    """The websocket is gone (or never opened): connect again."""


class LotusClient:
    def __init__(self, ws):
        self._ws = ws
        self._ids = itertools.count(1)
        self._calls: dict[int, trio.MemorySendChannel] = {}
        self._opening: dict[int, trio.MemorySendChannel] = {}   # channel calls not answered yet
        self._channels: dict[int, trio.MemorySendChannel] = {}
        self._closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, token: str = "") -> AsyncIterator["LotusClient"]:
        headers = [("Authorization", f"Bearer {token}")] if token else []
        try:
            async with open_websocket_url(url, extra_headers=headers, max_message_size=rpc.MAX_FRAME,
                                          connect_timeout=CONNECT_TIMEOUT_S,
                                          disconnect_timeout=CONNECT_TIMEOUT_S) as ws:
                client = cls(ws)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client._read)
                    try:
                        yield client
                    finally:
                        nursery.cancel_scope.cancel()
        except* HandshakeError as group:
            why = unwrap(group)
            raise LotusDisconnected(f"{url}: no websocket to the node ({str(why) or type(why).__name__})") from None
        except* OSError as group:
            raise LotusDisconnected(f"{url}: {unwrap(group)}") from None

    async def _read(self) -> None:
        try:
            while True:
                data = await self._ws.get_message()
                try:
                    frame = rpc.parse(data if isinstance(data, bytes) else data.encode())
                except rpc.RpcError as e:
                    log.warning("Lotus node sent a bad frame: %s", e.message)
                    continue
                self._dispatch(frame)
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            for out in [*self._calls.values(), *self._channels.values()]:
                out.close()

    def _dispatch(self, frame: rpc.Frame) -> None:
        if frame.method in (rpc.CH_VAL, rpc.CH_CLOSE):
            try:
                params = msgspec.json.decode(frame.params, type=_CHANNEL_PARAMS)
                channel = msgspec.json.decode(params[0], type=int) if params else None
            except msgspec.DecodeError:
                return
            out = self._channels.get(channel)
            if out is None:
                return
            if frame.method == rpc.CH_CLOSE or len(params) < 2:
                self._channels.pop(channel, None)
                out.close()
            else:
                try:
                    out.send_nowait(params[1])     # kept raw: decoded when consumed
                except trio.WouldBlock:           # a consumer this far behind resyncs
                    self._channels.pop(channel, None)
                    out.close()
            return
        out = self._calls.pop(frame.id, None) if isinstance(frame.id, int) else None
        if out is None:
            return
        values = self._opening.pop(frame.id, None)
        if values is not None and frame.error is None:    # a channel: ready before its first value
            try:
                self._channels[msgspec.json.decode(_raw(frame.result), type=int)] = values
            except msgspec.DecodeError:
                pass
        out.send_nowait(frame)

    async def _request(self, name: str, params: tuple, values=None) -> rpc.Frame:
        if self._closed:
            raise LotusDisconnected("the connection to the Lotus node is closed")
        call_id = next(self._ids)
        out, answer = trio.open_memory_channel(1)
        self._calls[call_id] = out
        if values is not None:
            self._opening[call_id] = values
        try:
            await self._ws.send_message(rpc.request(call_id, name, list(params)).decode())
            with trio.move_on_after(CALL_TIMEOUT_S):
                try:
                    return await answer.receive()
                except trio.EndOfChannel:
                    raise LotusDisconnected(f"{name}: the connection to the Lotus node dropped") from None
            self._closed = True              # a node that does not answer: connect again
            raise LotusDisconnected(f"{name}: no answer from the Lotus node in {CALL_TIMEOUT_S:.0f} s")
        except ConnectionClosed:
            raise LotusDisconnected(f"{name}: the connection to the Lotus node dropped") from None
        finally:
            self._calls.pop(call_id, None)
            self._opening.pop(call_id, None)

    async def call(self, name: str, *params) -> Any:
        """The typed result of Filecoin.<name>(*params); LotusError with the node's words."""
        method = METHODS[name]
        frame = await self._request(name, params)
        if frame.error is not None:
            raise LotusError(name, frame.error.code, frame.error.message)
        try:
            return msgspec.json.decode(_raw(frame.result), type=method.result)
        except msgspec.DecodeError as e:
            raise LotusError(name, rpc.PARSE_ERROR, f"the node's answer does not decode: {e}") from None

    @contextlib.asynccontextmanager
    async def channel(self, name: str, *params) -> AsyncIterator[AsyncIterator]:
        """The values a channel method sends, typed; it ends (LotusDisconnected) when the
        node closes it or the connection drops."""
        method = METHODS[name]
        out, values = trio.open_memory_channel(CHANNEL_BUFFER)
        frame = await self._request(name, params, values=out)     # registered as its answer arrives
        if frame.error is not None:
            raise LotusError(name, frame.error.code, frame.error.message)
        channel = msgspec.json.decode(_raw(frame.result))
        if not isinstance(channel, int) or self._channels.get(channel) is not out:
            raise LotusError(name, rpc.PARSE_ERROR, f"a channel id is an int, not {channel!r}")

        async def typed():
            async for value in values:
                try:
                    yield msgspec.json.decode(value, type=method.result)
                except msgspec.DecodeError as e:
                    raise LotusError(name, rpc.PARSE_ERROR, f"the node sent a bad value: {e}") from None
            raise LotusDisconnected(f"{name}: the channel closed")
        try:
            yield typed()
        finally:
            if self._channels.pop(channel, None) is not None and not self._closed:
                with trio.move_on_after(1), contextlib.suppress(ConnectionClosed):
                    await self._ws.send_message(msgspec.json.encode(
                        {"jsonrpc": "2.0", "method": rpc.CANCEL, "params": [frame.id]}).decode())


def _raw(result) -> bytes:
    return b"null" if result is msgspec.UNSET else bytes(result)
