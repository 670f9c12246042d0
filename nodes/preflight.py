"""What is checked before anything starts, so that a node (or a devnet) fails at once with
one line that says what to do, instead of after the rest came up: its curve keys, and
that every address it will listen on is free. The repo lock is nodes.repo."""
from __future__ import annotations

import errno
import os
import pathlib
import socket

from zqnode.bus import keys
from zqnode.bus.address import event_endpoints, split
from zqnode.bus.config import BusConfig

HUB_KEY = "HUB_NODE_PUB: a copy of the hub's node.pub, or the key in it, quoted"


class PreflightError(OSError):
    pass


# -- keys ---------------------------------------------------------------------------------------
def check_keys(bus: BusConfig, *, role: str, name: str) -> None:
    """Raise PreflightError naming the command that makes the missing key pair of a node,
    the hub (role "bus") or a CLI client (role "admin": `name` is ignored); then let
    bus.keys say what else is wrong (a key file readable by others, no hub.pub)."""
    if bus.security_mode() != "curve":
        return
    client = role == "admin"
    d = keys.key_dir(bus, "client" if client else name)
    default = keys.key_dir(BusConfig(), "client" if client else name)
    if not (d / keys.SECRET_FILE).exists():
        repo = "" if d == default else f" --repo {d}"
        if role == "bus":
            todo = (f"make the hub's with `zqnode keys init --role bus{repo}`; its node.pub is "
                    f"what the nodes need")
        elif client:
            todo = (f"make this CLI's with `zqnode keys init --role admin{repo} --hub-key "
                    f"HUB_NODE_PUB` (or --role reader; {HUB_KEY}), then on the hub: `zqnode "
                    f"keys allow KEY --role admin` with the key it prints")
        else:
            todo = (f"make it with `zqnode keys init --role {role} --name {name}{repo} --hub-key "
                    f"HUB_NODE_PUB` ({HUB_KEY}), then on the hub: `zqnode keys allow KEY --role "
                    f"{role} --name {name}` with the key it prints")
        raise PreflightError(f"no key pair in {d} (the bus over tcp needs keys): {todo}; "
                             f"on one machine, ipc:// or ZQNODE_BUS_SECURITY=none needs none")
    if role == "bus":
        keys.hub_credentials(bus, name)
    else:
        keys.peer_credentials(bus, "client" if client else name)


# -- listen addresses ---------------------------------------------------------------------------
def hub_addresses(address: str) -> list[tuple[str, str]]:
    """(what, address) of every socket a hub bound at `address` listens on."""
    ev_in, ev_out = event_endpoints(address)
    return [("the hub", address), ("the hub's events in", ev_in), ("the hub's events out", ev_out)]


def check_free(addresses: list[tuple[str, str]]) -> None:
    """Raise PreflightError for the first address something else listens on: a tcp
    address (tcp://HOST:PORT, or HOST:PORT) or an ipc socket that answers. Port 0 and *
    (any free port) always pass."""
    for what, address in addresses:
        scheme, rest = split(address) if "://" in address else ("tcp", address)
        if scheme == "tcp":
            host, _, port = rest.rpartition(":")
            if port in ("0", "*"):
                continue
            error = _tcp_in_use(host.strip("[]"), int(port))
        elif scheme == "ipc":
            error = _ipc_in_use(rest)
        else:
            continue
        if error:
            raise PreflightError(f"{what} cannot listen on {address}: {error}; nothing was started")


def _tcp_in_use(host: str, port: int) -> str:
    host = None if host in ("", "*") else host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"unknown host {host!r} ({e.strerror})"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # as zmq and trio bind
            try:
                s.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EAFNOSUPPORT:
                    continue
                return os.strerror(e.errno) if e.errno else str(e)
    return ""


def _ipc_in_use(path: str) -> str:
    """An ipc socket file that a process answers on (zmq would silently take it over)."""
    if not pathlib.Path(path).exists():
        return ""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return ""                        # a stale file: zmq replaces it
    return "another process answers on it"
