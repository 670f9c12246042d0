"""Settings shared by the hub and its peers, and the zmq socket options they imply."""
from __future__ import annotations

import msgspec
import zmq

from bus.address import DEFAULT_BUS, split


class BusConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    address: str = DEFAULT_BUS
    heartbeat_s: float = 1.0           # application heartbeats, both ways
    liveness: int = 3                  # heartbeats missed before the other side is down
    forget_after_s: float = 600.0      # the hub lists a down node this long
    call_timeout_s: float = 30.0       # default RPC timeout
    max_message_bytes: int = 64 << 20  # whole message; larger is refused with too_large
    max_envelope_bytes: int = 1 << 20
    max_inflight_calls: int = 1024     # per node; further calls wait (back-pressure)
    max_concurrent_handlers: int = 256 # per node; further requests get `busy`
    reconnect_max_s: float = 8.0       # back-off cap when the hub is away

    def __post_init__(self) -> None:
        split(self.address)                # a bad address fails here, naming it
        for name in ("heartbeat_s", "call_timeout_s", "reconnect_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.liveness < 1 or self.max_message_bytes < 1024 or self.max_envelope_bytes < 256:
            raise ValueError("liveness must be >= 1, max_message_bytes >= 1024, "
                             "max_envelope_bytes >= 256")


def configure(sock: zmq.Socket, cfg: BusConfig, *, linger_ms: int = 1000) -> zmq.Socket:
    """Options every bus socket gets. MAXMSGSIZE applies per frame in libzmq: a peer
    sending a bigger frame is disconnected before the frame is buffered; a message of
    many smaller frames over the limit is refused by us with a typed error instead."""
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes)
    ivl = int(cfg.heartbeat_s * 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)                  # ZMTP heartbeats (tcp)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ivl * cfg.liveness)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ivl * cfg.liveness)
    return sock
