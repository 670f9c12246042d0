"""JSON-RPC 2.0 as Lotus speaks it (go-jsonrpc): methods named "Filecoin.<Method>" (a
zqnode devnet's own "Zqnode.<Method>"),
parameters a JSON array, and channels (ChainNotify) answered with a channel id, then
`xrpc.ch.val` notifications [id, value] and a final `xrpc.ch.close` [id]; a client stops
a call with `xrpc.cancel` [request id]."""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from zqnode.nodes.chain.lotus.methods import METHODS, Method

MAX_FRAME = 4 << 20                 # bytes in one request or websocket message
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
HANDLER_ERROR = 1                   # go-jsonrpc's code for an error the method returned
CH_VAL, CH_CLOSE, CANCEL = "xrpc.ch.val", "xrpc.ch.close", "xrpc.cancel"

RequestId = int | Annotated[str, msgspec.Meta(max_length=128)] | None


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Frame(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A request, a notification or a response (go-jsonrpc's one frame type)."""
    jsonrpc: Annotated[str, msgspec.Meta(max_length=8)]      # "2.0", always written
    id: RequestId = None
    method: Annotated[str, msgspec.Meta(max_length=128)] = ""
    params: msgspec.Raw = msgspec.Raw(b"[]")
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET     # a response: its result (null too)
    error: "ErrorBody | None" = None


class ErrorBody(msgspec.Struct):
    code: int
    message: Annotated[str, msgspec.Meta(max_length=1 << 16)]


_frame = msgspec.json.Decoder(Frame)
_encode = msgspec.json.Encoder().encode


def parse(data: bytes) -> Frame:
    if len(data) > MAX_FRAME:
        raise RpcError(INVALID_REQUEST, f"request of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    try:
        frame = _frame.decode(data)
    except msgspec.ValidationError as e:
        raise RpcError(INVALID_REQUEST, f"not a JSON-RPC request: {e}") from None
    except msgspec.DecodeError as e:
        raise RpcError(PARSE_ERROR, f"not JSON: {e}") from None
    if frame.jsonrpc != "2.0":
        raise RpcError(INVALID_REQUEST, "jsonrpc must be \"2.0\"")
    return frame


def method_of(name: str) -> tuple[str, Method]:
    namespace, _, short = name.partition(".")
    method = METHODS.get(short)
    if method is None or method.namespace != namespace:
        raise RpcError(METHOD_NOT_FOUND, f"method '{name}' not found")
    return short, method


def params_of(method: Method, raw: msgspec.Raw) -> tuple:
    try:
        return msgspec.json.decode(raw, type=method.params)
    except msgspec.DecodeError as e:
        raise RpcError(INVALID_PARAMS, f"invalid params: {e}") from None


def request(id_: int, name: str, params: tuple | list) -> bytes:
    return _encode(Frame(jsonrpc="2.0", id=id_, method=f"{METHODS[name].namespace}.{name}", params=msgspec.Raw(_encode(params))))


def result(id_: RequestId, value: Any) -> bytes:
    return _encode(Frame(jsonrpc="2.0", id=id_, result=msgspec.Raw(_encode(value))))


def error(id_: RequestId, code: int, message: str) -> bytes:
    return _encode(Frame(jsonrpc="2.0", id=id_, error=ErrorBody(code=code, message=message)))


def channel_value(channel: int, value: Any) -> bytes:
    return _encode(Frame(jsonrpc="2.0", method=CH_VAL, params=msgspec.Raw(_encode([channel, value]))))


def channel_close(channel: int) -> bytes:
    return _encode(Frame(jsonrpc="2.0", method=CH_CLOSE, params=msgspec.Raw(_encode([channel]))))
