"""The /metrics endpoint over real TCP on loopback."""
import pytest
import trio

from zqnode.nodes.observe.http import ListenError, MetricsServer, parse_listen
from zqnode.nodes.observe.metrics import CONTENT_TYPE, Registry


async def get(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_metrics_are_served_and_other_paths_are_not(nursery):
    r = Registry()
    r.counter("hits_total", "Hits.").inc(3)
    server = MetricsServer("127.0.0.1:0", r)
    url = await nursery.start(server.run)
    assert url == f"http://127.0.0.1:{server.port}/metrics"
    head, _, body = (await get(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")).partition(
        b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.0 200 OK"
    assert f"Content-Type: {CONTENT_TYPE}".encode() in head
    assert body == b"# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 3\n"
    assert (await get(server.port, b"GET /nope HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 404")
    assert (await get(server.port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 405")
    assert (await get(server.port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.0 400")
    r.counter("hits_total", "Hits.").inc()             # every scrape is fresh
    assert (await get(server.port, b"GET /metrics HTTP/1.0\r\n\r\n")).endswith(b"hits_total 4\n")


async def test_a_port_in_use_is_a_one_line_error(nursery):
    first = MetricsServer("127.0.0.1:0", Registry())
    await nursery.start(first.run)
    with pytest.raises(OSError, match=f"metrics cannot listen on 127.0.0.1:{first.port}: "):
        await MetricsServer(f"127.0.0.1:{first.port}", Registry()).run()


def test_listen_addresses():
    assert parse_listen("127.0.0.1:9400") == ("127.0.0.1", 9400)
    assert parse_listen(":9400") == ("", 9400)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    for bad in ("9400x", "host", "host:", "host:99999"):
        with pytest.raises(ListenError, match="metrics_listen must be HOST:PORT"):
            parse_listen(bad)
