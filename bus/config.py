"""Settings shared by the hub and its peers, and the zmq socket options they imply."""
from __future__ import annotations

import os

import msgspec
import zmq

from zqnode.bus.address import DEFAULT_BUS, split

SECURITY_MODES = ("curve", "none")
LOCAL_SCHEMES = ("inproc", "mem")       # one process: never curve


class BusConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    address: str = DEFAULT_BUS          # the hub's RPC endpoint; its event ports are the next two
    heartbeat_s: float = 1.0           # application heartbeats, both ways
    liveness: int = 3                  # heartbeats missed before the other side is down
    forget_after_s: float = 600.0      # the hub lists a down node this long
    call_timeout_s: float = 30.0       # default RPC timeout
    max_message_bytes: int = 64 << 20  # whole message; larger is refused with too_large
    max_envelope_bytes: int = 1 << 20  # the envelope frame (binary payloads ride in extra frames)
    max_inflight_calls: int = 1024     # per node; further calls wait (back-pressure)
    max_concurrent_handlers: int = 256 # per node; further requests get `busy`
    reconnect_max_s: float = 8.0       # back-off cap when the hub is away
    # -- security (README "Security: deploying across machines") --
    security: str = ""                 # "curve" | "none"; "": $ZQNODE_BUS_SECURITY, else
                                       # curve on tcp, none on ipc/inproc/mem (local)
    key_dir: str = ""                  # this node's node.key/node.pub and hub.pub; "":
                                       # $ZQNODE_KEY_DIR, else ~/.zqnode/NAME
    hub_key: str = ""                  # the hub's public key (Z85); "": key_dir/hub.pub
    allow_list: str = ""               # hub: the allowed keys file; "": key_dir/allowed_keys
    max_inflight_per_sender: int = 64  # requests one caller may have open at one node;
                                       # beyond: `busy`
    hub_max_inflight_per_sender: int = 1024  # ... open through the hub, all targets and
                                             # all connections of one key together
    replay_window: int = 256           # request ids remembered per caller (replays refused)

    def __post_init__(self) -> None:
        split(self.address)                # a bad address fails here, naming it
        for name in ("heartbeat_s", "call_timeout_s", "reconnect_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.security not in ("", *SECURITY_MODES):
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)} "
                             f"(or empty for the default), got {self.security!r}")
        if self.security == "curve" and split(self.address)[0] in LOCAL_SCHEMES:
            raise ValueError(f"curve security is for tcp and ipc addresses, not {self.address!r} "
                             "(in-process transports have no handshake to secure)")
        if min(self.max_inflight_per_sender, self.hub_max_inflight_per_sender, self.replay_window) < 1:
            raise ValueError("max_inflight_per_sender, hub_max_inflight_per_sender and "
                             "replay_window must be >= 1")
        if self.liveness < 1 or self.max_message_bytes < 1024 or self.max_envelope_bytes < 256:
            raise ValueError("liveness must be >= 1, max_message_bytes >= 1024, "
                             "max_envelope_bytes >= 256")

    def security_mode(self) -> str:
        """"curve" or "none": the setting, else $ZQNODE_BUS_SECURITY, else by transport
        (tcp crosses machines: curve; ipc, inproc and mem stay on this one: none)."""
        scheme = split(self.address)[0]
        if scheme in LOCAL_SCHEMES:
            return "none"
        mode = self.security or os.environ.get("ZQNODE_BUS_SECURITY", "")
        if mode:
            if mode not in SECURITY_MODES:
                raise ValueError(f"ZQNODE_BUS_SECURITY must be one of {', '.join(SECURITY_MODES)},"
                                 f" got {mode!r}")
            return mode
        return "curve" if scheme == "tcp" else "none"


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
