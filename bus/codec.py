"""The wire format: an envelope plus a tagged-union message body.

A bus message is a list of frames. RPC frames from a node to the hub are
`[route, envelope, *buffers]` (route = the target); from the hub to a node they are
`[sender, role, envelope, *buffers]`, sender and role stamped by the hub (a node cannot
write them: see bus.permissions). An event is `[topic \0 envelope, *buffers]` from its
publisher and `[topic \0 sender \0 role \0 envelope, *buffers]` from the hub, which
writes the stamp (`event_frames`, `split_event`): one frame, because forwarding costs
the hub per frame, and subscriptions still match topic prefixes. The envelope is a
small array-like struct whose `body` stays raw msgpack until a channel decodes it with
its own union of message kinds: routing needs no body decoding, and a bad body can
still be answered with an error that names the request id. Large binary payloads
(proofs, sector data) travel as extra frames, never inside a struct.
"""
from __future__ import annotations

import time
from typing import Any, ClassVar, Iterable, Union

import msgspec


class Msg(msgspec.Struct, tag_field="kind", tag=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every message kind. The tag (field `kind`) is the class name."""

    registry: ClassVar[dict[str, type["Msg"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__name__             # tag=True: the tag is the class name
        other = Msg.registry.get(kind)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise TypeError(f"message kind {kind!r} defined twice: {other} and {cls}")
        Msg.registry[kind] = cls


class Envelope(msgspec.Struct, array_like=True, gc=False):
    sender: str              # node id of the author (RPC: the hub stamps the route frame)
    body: msgspec.Raw        # msgpack of a Msg subclass, decoded per channel
    id: int = 0              # request id; a reply carries its request's id
    reply: bool = False      # True on replies (results and errors)
    seq: int = 0             # per-publisher sequence number of events
    cause: str = ""          # why this happened: a sector, job or request cause id
    ts: float = 0.0          # sender's wall clock, seconds since the epoch


class Error(Msg):
    """A typed error reply. `code` is one of ErrorCode's values."""

    code: str
    message: str
    retry: bool = False      # True when the same request may succeed later (busy, timeout)


class ErrorCode:
    BAD_FRAMES = "bad_frames"        # not an envelope, or missing frames
    UNKNOWN_KIND = "unknown_kind"    # body kind this node does not handle
    INVALID = "invalid"              # body failed validation (types, unknown fields)
    TOO_LARGE = "too_large"          # over the configured message size limit
    NO_ROUTE = "no_route"            # no such node or no live node of that role
    BUSY = "busy"                    # peer's queue full; back off and retry
    NOT_REGISTERED = "not_registered"
    HANDLER = "handler"              # the handler raised
    PERMISSION = "permission"        # the caller's role may not send this kind (or register so)
    REPLAY = "replay"                # a request id this node has already seen from this caller


class BusError(Exception):
    """Base of errors the bus raises to callers."""


class RemoteError(BusError):
    """The peer answered a call with an Error message."""

    def __init__(self, code: str, message: str, *, peer: str = "", retry: bool = False):
        super().__init__(f"{peer or 'peer'}: {code}: {message}")
        self.code, self.message, self.peer, self.retry = code, message, peer, retry


class BadMessage(BusError):
    """Frames that cannot be decoded; `code` says how to answer the sender."""

    def __init__(self, code: str, message: str, envelope: Envelope | None = None):
        super().__init__(message)
        self.code, self.message, self.envelope = code, message, envelope


_enc = msgspec.msgpack.Encoder()
_env_dec = msgspec.msgpack.Decoder(Envelope)
NIL = msgspec.Raw(b"\xc0")


def encode_body(msg: Msg) -> bytes:
    return _enc.encode(msg)


def encode_envelope(sender: str, msg: Msg | msgspec.Raw, *, id: int = 0, reply: bool = False,
                    seq: int = 0, cause: str = "", ts: float | None = None) -> bytes:
    body = msg if isinstance(msg, msgspec.Raw) else msgspec.Raw(_enc.encode(msg))
    return _enc.encode(Envelope(sender, body, id, reply, seq, cause,
                                time.time() if ts is None else ts))


# Everything msgspec can raise for a peer's bytes: its own errors, UnicodeDecodeError for
# a str that is not utf-8 (found by fuzzing) and RecursionError for deeply nested
# arrays, even inside a Raw field it only skips (a 1 KB message did that). Every decoder
# of bytes that came from outside this process catches these, and only these.
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)


def decode_envelope(frame: bytes) -> Envelope:
    """The envelope in `frame`; BadMessage when it is not one, carrying what could be
    read of its `id` and `reply` (so the error answers the request it was meant to be)."""
    try:
        return _env_dec.decode(frame)
    except DECODE_ERRORS as e:
        raise BadMessage(ErrorCode.BAD_FRAMES, f"not an envelope: {e}", _head_of(frame)) from None


_fields_dec = msgspec.msgpack.Decoder(list[msgspec.Raw])
_id_dec = msgspec.msgpack.Decoder(int)
_reply_dec = msgspec.msgpack.Decoder(bool)


def _head_of(frame: bytes) -> Envelope | None:
    """An empty envelope with the id and reply flag of an array that failed as an
    envelope (a field of the wrong type, one too many), or None when even those
    cannot be read."""
    try:
        fields = _fields_dec.decode(frame)
        if len(fields) < 3:
            return None
        reply = _reply_dec.decode(fields[3]) if len(fields) > 3 else False
        return Envelope(sender="", body=NIL, id=_id_dec.decode(fields[2]), reply=reply)
    except DECODE_ERRORS:
        return None


EVENT_SEP = b"\x00"              # ends an event's topic (and the hub's stamp); never in a name


def event_frames(topic: str | bytes, envelope: bytes, buffers: Iterable = ()) -> list:
    """An event as its publisher sends it."""
    if isinstance(topic, str):
        topic = topic.encode()
    return [topic + EVENT_SEP + envelope, *buffers]


def split_event(frame: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(topic, sender, role, envelope) of an event the hub forwarded; ValueError when
    the frame is not one."""
    topic, sender, role, envelope = frame.split(EVENT_SEP, 3)
    return topic, sender, role, envelope


class BodyDecoder:
    """One reused decoder for a channel: the union of the kinds it accepts."""

    def __init__(self, kinds: Iterable[type[Msg]]):
        self.kinds = tuple(dict.fromkeys(kinds))
        if not self.kinds:
            raise ValueError("a channel needs at least one message kind")
        self._dec = msgspec.msgpack.Decoder(Union[self.kinds])  # type: ignore[valid-type]
        self._tags = {k.__name__ for k in self.kinds}

    def decode(self, env: Envelope) -> Msg:
        try:
            return self._dec.decode(env.body)
        except msgspec.ValidationError as e:
            kind = peek_kind(env.body)
            if kind is not None and kind not in self._tags:
                raise BadMessage(ErrorCode.UNKNOWN_KIND, f"unknown message kind {kind!r}", env) from None
            raise BadMessage(ErrorCode.INVALID, f"invalid {kind or 'message'}: {e}", env) from None
        except DECODE_ERRORS as e:
            raise BadMessage(ErrorCode.BAD_FRAMES, f"body is not msgpack: {e}", env) from None


class _Kind(msgspec.Struct):
    kind: str = ""


_kind_dec = msgspec.msgpack.Decoder(_Kind)


def peek_kind(body: bytes | msgspec.Raw) -> str | None:
    """The `kind` of a raw body without decoding the rest (for logs, taps, metrics)."""
    try:
        return _kind_dec.decode(body).kind or None
    except DECODE_ERRORS:
        return None


def to_plain(body: bytes | msgspec.Raw) -> Any:
    """A raw body as plain Python data, for display (tail, logs)."""
    try:
        return msgspec.msgpack.decode(body)
    except DECODE_ERRORS:
        return repr(bytes(body))


_all_cache: tuple[int, BodyDecoder] | None = None


def any_decoder() -> BodyDecoder:
    """A decoder for every kind registered so far (replies, generic tools)."""
    global _all_cache
    n = len(Msg.registry)
    if _all_cache is None or _all_cache[0] != n:
        _all_cache = (n, BodyDecoder(Msg.registry.values()))
    return _all_cache[1]
