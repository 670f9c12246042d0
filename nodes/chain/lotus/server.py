"""The devnet chain's Lotus API endpoint: JSON-RPC over HTTP POST and over websocket at
/rpc/v1 (and /rpc/v0), with Lotus's tokens (Authorization: Bearer, or ?token=), served by
hypercorn (an ASGI server that runs on Trio). ChainNotify is a websocket channel.

Bounded: a frame is at most rpc.MAX_FRAME bytes, a connection runs at most
MAX_IN_FLIGHT calls and MAX_CHANNELS channels, and a ChainNotify consumer that falls
HEAD_BUFFER changes behind is closed (it subscribes again and gets a "current" snapshot).
"""
from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import parse_qs

import hypercorn.config
import hypercorn.trio
import msgspec
import trio

from zqnode.nodes.chain.lotus import rpc
from zqnode.nodes.chain.lotus import types as T
from zqnode.nodes.chain.lotus.auth import Tokens, TokenError, allowed, permissions_of
from zqnode.nodes.chain.lotus.methods import PERMISSIONS, READ

log = logging.getLogger("zqnode.chain.lotus")

PATHS = ("/rpc/v1", "/rpc/v0")
MAX_IN_FLIGHT = 32
MAX_CHANNELS = 8
MAX_CONNECTIONS = 64
MAX_ANONYMOUS = 32                  # of them, without a token: the rest stay for token holders
HEAD_BUFFER = 64


class LotusServer:
    """`api` has an async method per Lotus method it serves (DevnetLotusAPI); `changes()`
    gives the ChainNotify batches to send from now on."""

    def __init__(self, api, tokens: Tokens):
        self.api, self.tokens = api, tokens
        self._subscribers: set[trio.MemorySendChannel] = set()
        self._connections = self._anonymous = 0

    # -- head changes ---------------------------------------------------------------------------
    def head_changed(self, reverted: list, applied: list) -> None:
        """Tell every ChainNotify channel (tipsets: reverted newest first, applied oldest first)."""
        self.api.head_moved()
        if not self._subscribers:
            return
        batch = ([T.HeadChange(Type="revert", Val=self.api.tipset_json(t)) for t in reverted]
                 + [T.HeadChange(Type="apply", Val=self.api.tipset_json(t)) for t in applied])
        for sub in list(self._subscribers):
            try:
                sub.send_nowait(batch)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(sub)      # too slow or gone: its channel closes
                sub.close()

    # -- calls ---------------------------------------------------------------------------------
    async def call(self, frame: rpc.Frame, perms: frozenset[str]) -> bytes:
        """The response frame to one request (never raises for a peer's mistake)."""
        try:
            name, method = rpc.method_of(frame.method)
            if not allowed(perms, method.perm):
                raise rpc.RpcError(rpc.HANDLER_ERROR, f"missing permission to invoke '{name}' (need '{method.perm}')")
            if method.channel:
                raise rpc.RpcError(rpc.HANDLER_ERROR, f"{name} returns a channel: call it over a websocket")
            params = rpc.params_of(method, frame.params)
            handler = self.AuthVerify if name == "AuthVerify" else getattr(self.api, name, None)
            if handler is None:
                raise rpc.RpcError(rpc.HANDLER_ERROR, f"{name} is not served by this devnet yet")
            return rpc.result(frame.id, await handler(*params))
        except rpc.RpcError as e:
            return rpc.error(frame.id, e.code, e.message)
        except Exception as e:                     # a bug must not take the connection down
            log.exception("Lotus API %s failed", frame.method)
            return rpc.error(frame.id, rpc.HANDLER_ERROR, f"internal error: {type(e).__name__}")

    async def AuthVerify(self, token: str) -> list[str]:
        """The permissions a token grants (Lotus's order), or Lotus's refusal."""
        try:
            perms = self.tokens.verify(token)
        except TokenError as e:
            raise rpc.RpcError(rpc.HANDLER_ERROR, str(e)) from None
        return [p for p in PERMISSIONS if p in perms]

    async def _notify(self, frame: rpc.Frame, send: Callable, channel: int,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
        """ChainNotify: the channel id, a "current" snapshot, then every change."""
        out, changes = trio.open_memory_channel(HEAD_BUFFER)
        self._subscribers.add(out)
        try:
            await send(rpc.result(frame.id, channel))
            task_status.started()
            head = await self.api.ChainHead()
            await send(rpc.channel_value(channel, [T.HeadChange(Type="current", Val=head)]))
            async with changes:
                async for batch in changes:
                    await send(rpc.channel_value(channel, batch))
        finally:
            self._subscribers.discard(out)
            out.close()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await send(rpc.channel_close(channel))
                except Exception:
                    pass

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope.get("path") not in PATHS:
            return await _refuse(scope, send, 404, b"not found: the Lotus API is at /rpc/v1\n")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            perms = permissions_of(headers.get("authorization"), (query.get("token") or [None])[0], self.tokens)
        except TokenError as e:
            log.warning("Lotus API request refused: %s", e)
            return await _refuse(scope, send, 401, b"")
        if scope["type"] == "http":
            await self._http(scope, receive, send, perms)
        elif scope["type"] == "websocket":
            await self._websocket(receive, send, perms)

    async def _http(self, scope, receive, send, perms) -> None:
        if scope["method"] != "POST":
            return await _refuse(scope, send, 405, b"POST a JSON-RPC request, or open a websocket\n")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > rpc.MAX_FRAME:
                return await _refuse(scope, send, 413, b"request too large\n")
            if not message.get("more_body"):
                break
        try:
            answer = await self.call(rpc.parse(bytes(body)), perms)
        except rpc.RpcError as e:
            answer = rpc.error(None, e.code, e.message)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    async def _websocket(self, receive, send, perms) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        anonymous = perms == {READ}
        if self._connections >= MAX_CONNECTIONS or (anonymous and self._anonymous >= MAX_ANONYMOUS):
            return await send({"type": "websocket.close", "code": 1013})
        self._connections += 1
        self._anonymous += anonymous
        lock = trio.Lock()

        async def send_text(data: bytes) -> None:
            async with lock:
                await send({"type": "websocket.send", "text": data.decode()})

        calls: dict[Any, trio.CancelScope] = {}
        channels = [0, 0]                   # open now, ids given
        in_flight = [0]
        try:
            await send({"type": "websocket.accept"})
            async with trio.open_nursery() as nursery:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        nursery.cancel_scope.cancel()
                        return
                    data = message.get("bytes") or (message.get("text") or "").encode()
                    try:
                        frame = rpc.parse(data)
                    except rpc.RpcError as e:
                        await send_text(rpc.error(None, e.code, e.message))
                        continue
                    if frame.method == rpc.CANCEL:
                        for call_id in _ids(frame):
                            scope = calls.get(call_id)
                            if scope is not None:
                                scope.cancel()
                        continue
                    if in_flight[0] >= MAX_IN_FLIGHT or frame.id in calls:
                        why = "too many calls in flight" if frame.id not in calls else "a call with this id is in flight"
                        await send_text(rpc.error(frame.id, rpc.HANDLER_ERROR, why))
                        continue
                    await nursery.start(self._ws_call, frame, perms, send_text, calls, channels, in_flight)
        finally:
            self._connections -= 1
            self._anonymous -= anonymous

    async def _ws_call(self, frame, perms, send_text, calls, channels, in_flight,
                       task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            if frame.id is not None:            # a notification cannot be cancelled
                calls[frame.id] = scope
            in_flight[0] += 1
            task_status.started()
            try:
                try:
                    _, method = rpc.method_of(frame.method)
                except rpc.RpcError:
                    method = None                   # `call` answers the error
                if method is not None and method.channel and allowed(perms, method.perm):
                    if channels[0] >= MAX_CHANNELS:
                        await send_text(rpc.error(frame.id, rpc.HANDLER_ERROR, "too many channels open"))
                        return
                    channels[0] += 1
                    channels[1] += 1
                    try:
                        await self._notify(frame, send_text, channel=channels[1])
                    finally:
                        channels[0] -= 1
                else:
                    await send_text(await self.call(frame, perms))
            finally:
                in_flight[0] -= 1
                if calls.get(frame.id) is scope:
                    del calls[frame.id]

    async def serve(self, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; task_status gets the URLs it listens on (http://...)."""
        config = hypercorn.config.Config()
        config.bind = [f"{host}:{port}"]
        config.websocket_max_message_size = rpc.MAX_FRAME
        config.h11_max_incomplete_size = 64 << 10
        config.accesslog = None
        config.errorlog = logging.getLogger("zqnode.chain.lotus.http")
        await hypercorn.trio.serve(self, config, task_status=task_status)


def _ids(frame: rpc.Frame) -> list:
    try:
        ids = msgspec.json.decode(frame.params, type=list[rpc.RequestId])
    except msgspec.DecodeError:
        return []
    return [i for i in ids[:1] if i is not None]


async def _refuse(scope, send, status: int, body: bytes) -> None:
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": []})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
