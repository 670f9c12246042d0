"""The hub's authenticator: a ZAP handler (RFC 27) served under Trio.

libzmq asks `inproc://zeromq.zap.01` of a socket's context whether to accept each
CURVE handshake. The hub binds that endpoint in its own context with a ROUTER driven by
a `ZSocket` in the hub's nursery (no thread) and answers from the allow-list: known
keys get status 200 with the key as User-Id (libzmq then puts it on every message of
that connection, which is how the hub knows who sent what), unknown keys 400, logged.
Readers are refused on the events-in socket: only nodes publish.

The allow-list file is checked for changes every `check_every_s` and reloaded; a file
that does not parse keeps the list in force (logged), so a half-edited file never locks
the cluster out. `on_change(new_list)` tells the hub, which drops what revoked keys hold.
"""
from __future__ import annotations

import logging
import os
import pathlib
from typing import Callable

import trio
import zmq
from zmq.utils import z85

from zqnode.bus.keys import AllowList, KeyFileError
from zqnode.bus.permissions import READER
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.bus.zsock import ZSocket

log = logging.getLogger("zqnode.bus.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN_RPC = b"zqnode-rpc"
DOMAIN_EVENTS_IN = b"zqnode-events-in"
DOMAIN_EVENTS_OUT = b"zqnode-events-out"


class Authenticator:
    def __init__(self, ctx: zmq.Context, path: pathlib.Path, *,
                 on_change: Callable[[AllowList], None] | None = None, check_every_s: float = 1.0):
        self.ctx, self.path = ctx, pathlib.Path(path)
        self.on_change = on_change
        self.check_every_s = check_every_s
        self.allow = AllowList()
        self._stamp: tuple | None = None
        self.refusals = RateLimitedLog(log, interval_s=10.0)
        self.accepted = self.refused = 0           # handshakes, for tests and metrics
        self._zs: ZSocket | None = None

    def bind(self) -> None:
        """Bind the ZAP endpoint and load the list. Call before any CURVE server binds:
        a context with no ZAP handler lets every CURVE client in."""
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            raise OSError(f"cannot serve ZAP in this zmq context ({e}): one hub per context") from None
        self._zs = ZSocket(sock, on_batch=self._answer)
        self.reload(initial=True)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self._zs is None:
            self.bind()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._zs.run)
            task_status.started()
            while True:
                await trio.sleep(self.check_every_s)
                self.reload()

    def close(self) -> None:
        """Close the ZAP socket: after the CURVE servers it answers for (the hub does)."""
        if self._zs is not None:
            self._zs.close(linger=0)

    # -- the allow-list ---------------------------------------------------------------
    def reload(self, *, initial: bool = False) -> bool:
        """Reload the list if its file changed since the last look. Returns True if it did."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        except OSError as e:
            log.error("cannot look at the allow-list %s: %s", self.path, e.strerror)
            return False
        if stamp == self._stamp and not initial:
            return False
        try:
            allow = AllowList.load(self.path)
        except KeyFileError as e:
            if initial:
                raise
            log.error("allow-list not reloaded, the previous one stays in force: %s", e)
            self._stamp = stamp                 # do not re-log the same broken file every check
            return False
        self._stamp, self.allow = stamp, allow
        log.info("allow-list %s: %d keys%s", self.path, len(allow.entries),
                 "" if stamp else " (no file: nobody may connect)")
        if self.on_change is not None and not initial:
            self.on_change(allow)
        return True

    # -- ZAP --------------------------------------------------------------------------
    def _answer(self, batch: list) -> None:
        for frames in batch:
            reply = self._decide(frames)
            if reply is not None:
                try:
                    self._zs.send_nowait(reply)
                except (zmq.ZMQError, trio.ClosedResourceError):
                    pass                         # libzmq gave up on that handshake

    def _decide(self, frames: list) -> list | None:
        # [routing id, b"", version, request id, domain, address, identity, mechanism, *credentials]
        if len(frames) < 8 or frames[1] != b"" or frames[2] != b"1.0":
            log.error("malformed ZAP request (%d frames)", len(frames))
            return None
        rid, req_id, domain, address, mechanism = frames[0], frames[3], frames[4], frames[5], frames[7]
        creds = frames[8:]

        def reply(code: bytes, text: bytes, user: bytes = b"") -> list:
            return [rid, b"", b"1.0", req_id, code, text, user, b""]

        where = address.decode(errors="replace")
        if mechanism != b"CURVE" or len(creds) != 1 or len(creds[0]) != 32:
            self.refused += 1
            self.refusals.warning(("mechanism", where), "refused a %s handshake from %s: curve "
                                  "keys are required", mechanism.decode(errors="replace"), where)
            return reply(b"400", b"CURVE keys required")
        key = z85.encode(creds[0]).decode()
        role = self.allow.role_of(key)
        if role is None and self.reload():        # allowed a moment ago: no need to wait
            role = self.allow.role_of(key)         # for the next periodic check
        if role is None:
            self.refused += 1
            self.refusals.warning(key, "refused key %s from %s: not on the allow-list %s",
                                  key, where, self.path)
            return reply(b"400", b"key not allowed")
        if domain == DOMAIN_EVENTS_IN and role == READER:
            self.refused += 1
            self.refusals.warning((key, "publish"), "refused key %s (reader) from %s: readers do "
                                  "not publish events", key, where)
            return reply(b"400", b"readers may not publish")
        self.accepted += 1
        log.debug("accepted key %s (%s) from %s on %s", key, role, where, domain.decode())
        return reply(b"200", b"OK", key.encode())
