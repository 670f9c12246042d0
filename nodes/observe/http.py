"""`--metrics-listen HOST:PORT`: a tiny HTTP/1.0 server on the nodes' Trio thread.

`GET /metrics` answers the registry in the Prometheus text format; `GET /` says where
the metrics are. It runs on the same thread as the nodes, so collectors read node state
between two of their steps, never in the middle of one. One request per connection."""
from __future__ import annotations

import logging

import trio

from zqnode.nodes.observe.metrics import CONTENT_TYPE, Registry

log = logging.getLogger("zqnode.observe.http")

MAX_HEAD = 8192
READ_TIMEOUT_S = 5.0


class ListenError(ValueError):
    pass


def parse_listen(listen: str, what: str = "metrics_listen") -> tuple[str, int]:
    """HOST:PORT, :PORT (every interface) or [IPv6]:PORT; port 0 picks a free one."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:9400 or :9400), "
                          f"got {listen!r}")
    return host.strip("[]"), int(port)


class MetricsServer:
    def __init__(self, listen: str, registry: Registry):
        self.host, self.port = parse_listen(listen)
        self.registry = registry
        self.url = ""

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host or None)
        except OSError as e:
            raise OSError(f"metrics cannot listen on {self.host or '*'}:{self.port}: "
                          f"{e.strerror or e}") from None
        host, port = listeners[0].socket.getsockname()[:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/metrics"
        log.info("metrics on %s", self.url)
        task_status.started(self.url)
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        try:
            with trio.move_on_after(READ_TIMEOUT_S):
                head = await _read_head(stream)
                status, body, ctype = self.answer(head)
                await stream.send_all(
                    f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:                    # a scrape must never stop the server
            log.exception("metrics request failed")
        finally:
            await trio.aclose_forcefully(stream)

    def answer(self, head: bytes) -> tuple[str, bytes, str]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path == b"/metrics":
            return "200 OK", self.registry.render().encode(), CONTENT_TYPE
        if path == b"/":
            return "200 OK", b"zqnode: metrics at /metrics\n", "text/plain"
        return "404 Not Found", b"not found: try /metrics\n", "text/plain"


async def _read_head(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_HEAD:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data
