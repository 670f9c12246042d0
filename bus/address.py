"""Bus addresses. Peers are given one address, the hub's RPC endpoint; the event
endpoints sit beside it (tcp: the next two ports; ipc/inproc/mem: suffixed names) and
the hub reports the ones it bound, so peers never need to be told twice."""
from __future__ import annotations

import os
import socket

DEFAULT_BUS = os.environ.get("ZQNODE_BUS", "tcp://127.0.0.1:7700")
SCHEMES = ("tcp", "ipc", "inproc", "mem")


class AddressError(ValueError):
    pass


def split(address: str) -> tuple[str, str]:
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in SCHEMES or not rest:
        raise AddressError(f"bad bus address {address!r}: expected one of "
                           + ", ".join(f"{s}://..." for s in SCHEMES))
    return scheme, rest


def event_endpoints(address: str) -> tuple[str, str]:
    """(events_in, events_out) to bind beside a hub bound at `address`."""
    scheme, rest = split(address)
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if not host:
            raise AddressError(f"bad tcp address {address!r}: expected tcp://HOST:PORT")
        if port in ("*", "0"):
            return f"tcp://{host}:*", f"tcp://{host}:*"
        try:
            p = int(port)
        except ValueError:
            raise AddressError(f"bad port in {address!r}") from None
        return f"tcp://{host}:{p + 1}", f"tcp://{host}:{p + 2}"
    return f"{address}.events-in", f"{address}.events-out"


def reachable(endpoint: str, bus_address: str) -> str:
    """An endpoint the hub reported, made reachable from a peer that used
    `bus_address` (a hub bound to 0.0.0.0 reports that; the peer knows the real host)."""
    scheme, rest = split(endpoint)
    if scheme != "tcp":
        return endpoint
    host, _, port = rest.rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", "::"):
        bus_host = split(bus_address)[1].rpartition(":")[0]
        return f"tcp://{bus_host}:{port}"
    return endpoint


def free_tcp_address(host: str = "127.0.0.1") -> str:
    """A tcp bus address on `host` whose port and the two after it (the hub's event
    ports) are free now: for tests and throw-away clusters."""
    while True:
        socks = [socket.socket() for _ in range(3)]
        try:
            socks[0].bind((host, 0))
            port = socks[0].getsockname()[1]
            for i, s in enumerate(socks[1:], 1):
                s.bind((host, port + i))
            return f"tcp://{host}:{port}"
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
