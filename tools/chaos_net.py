"""Lost and delayed bus messages between real processes: each node reaches the hub's RPC
endpoint through its own TCP link in the chaos harness, which can hold the link (what is
in flight arrives late: delayed messages, heartbeats included) or cut it (what is in
flight is lost; ZeroMQ reconnects once the link takes connections again).

    link = Link(hub_port)            # listens on link.port, forwards to the hub
    link.delay(2.0)                  # hold both directions for 2 s
    link.cut(2.0)                    # drop its connections, refuse new ones for 2 s

Only RPC traffic passes (requests, replies, heartbeats): peers take the hub's event
endpoints from the hub itself. Bytes are forwarded as they are, so CURVE works through it.
"""
from __future__ import annotations

import socket
import threading
import time

CHUNK = 1 << 16


class Link:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self.held_until = 0.0
        self.refused_until = 0.0
        self.conns: set[socket.socket] = set()
        self.counts = {"accepted": 0, "forwarded": 0, "refused": 0, "unreachable": 0}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name=f"link-{self.port}").start()

    def delay(self, seconds: float) -> None:
        self.held_until = time.monotonic() + seconds

    def cut(self, seconds: float) -> None:
        self.refused_until = time.monotonic() + seconds
        with self.lock:
            for s in self.conns:
                _shut(s)                   # its pump threads wake up and close it

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.counts["accepted"] += 1
            if time.monotonic() < self.refused_until:
                self.counts["refused"] += 1
                _close(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        """Upstream for one client (in its own thread: a hub that does not answer must not
        hold the next connection back)."""
        try:
            upstream = socket.create_connection(self.target, timeout=5.0)
            upstream.settimeout(None)
        except OSError:
            self.counts["unreachable"] += 1
            _close(client)
            return
        if upstream.getsockname() == upstream.getpeername():   # the hub is down and the port
            _close(upstream)                                   # free: TCP connected to itself
            _close(client)
            return
        self.counts["forwarded"] += 1
        with self.lock:
            self.conns |= {client, upstream}
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                while time.monotonic() < self.held_until:     # held: it arrives late
                    time.sleep(0.02)
                dst.sendall(data)
        except OSError:
            pass
        with self.lock:
            self.conns -= {src, dst}
        _close(src)
        _close(dst)

    def close(self) -> None:
        _close(self.server)
        self.cut(0.0)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _close(s: socket.socket) -> None:
    _shut(s)
    s.close()
