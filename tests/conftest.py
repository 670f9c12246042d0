import socket

import pytest


def _free_port_triple() -> int:
    """A port P with P+1 and P+2 free too (a hub's RPC port and its event ports)."""
    while True:
        socks = [socket.socket() for _ in range(3)]
        try:
            socks[0].bind(("127.0.0.1", 0))
            port = socks[0].getsockname()[1]
            for i, s in enumerate(socks[1:], 1):
                s.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


@pytest.fixture
def free_bus_address():
    """Call it for a tcp bus address whose three ports are free now."""
    return lambda: f"tcp://127.0.0.1:{_free_port_triple()}"
