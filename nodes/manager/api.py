"""The requester API, in process or over the bus.

    wid = await requester.do(task, params, sector, sector_size, priority=0)
    blob = await requester.wait(wid)          # WorkFailed / WorkAborted / UnknownWork
    await requester.consume(wid)
    result = await run_task(requester, "PC2", PC2Params(), sector, 2048)   # the three

`ManagerNode` itself is the in-process requester (the sealing state machine holds it);
`BusRequester(peer)` is the same over the bus (the poster, the CLI). A requester that
restarts simply asks `do` again: the same work has the same WorkID, and a result that
was stored before the restart comes back at once, nothing recomputed.
"""
from __future__ import annotations

import logging
from typing import Protocol

import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.peer import CallTimeout, Peer
from zqnode.bus.retry import backoff
from zqnode.nodes.wire import manager as W
from zqnode.nodes.manager.errors import WorkAborted, WorkFailed
from zqnode.nodes.manager.errors import InvalidTransition, TrackerError, UnknownWork
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.params import check_params, decode_result

log = logging.getLogger("zqnode.manager.api")


class Requester(Protocol):
    async def do(self, task: str, params, sector: SectorRef, sector_size: int, *,
                 priority: int = 0, cause: str = "") -> str: ...

    async def wait(self, work_id: str) -> bytes: ...

    async def consume(self, work_id: str) -> None: ...

    async def abort(self, job: str) -> str: ...


async def run_task(requester: Requester, task: str, params, sector: SectorRef, sector_size: int,
                   *, priority: int = 0):
    """do, wait, consume: the task's result struct."""
    wid = await requester.do(task, params, sector, sector_size, priority=priority)
    blob = await requester.wait(wid)
    await requester.consume(wid)
    return decode_result(task, blob)


class BusRequester:
    """The requester API over the bus. While the manager is away (restarting) calls are
    retried for up to `patience_s`; its typed refusals become the same exceptions the
    in-process API raises."""

    def __init__(self, peer: Peer, *, manager: str = "@manager", patience_s: float = 300.0):
        self.peer, self.manager, self.patience_s = peer, manager, patience_s

    async def _call(self, msg, *, timeout: float = 10.0):
        deadline = trio.current_time() + self.patience_s
        for delay in backoff(0.2, 2.0):
            try:
                return await self.peer.call_with_buffers(self.manager, msg, timeout=timeout)
            except RemoteError as e:
                if e.code == W.UNKNOWN_WORK:
                    raise UnknownWork(e.message) from None
                if e.code == W.WORK_ABORTED:
                    raise WorkAborted(getattr(msg, "work_id", ""), e.message) from None
                if e.code == W.WORK_FAILED:
                    raise WorkFailed(getattr(msg, "work_id", ""), e.message) from None
                if e.code == W.INVALID_TRANSITION:
                    raise InvalidTransition(e.message) from None
                if e.code == ErrorCode.INVALID:
                    raise TrackerError(e.message) from None
                if not (e.retry or e.code == ErrorCode.NO_ROUTE):
                    raise
                why = e
            except CallTimeout as e:
                why = e
            if trio.current_time() > deadline:
                raise CallTimeout(f"the manager did not answer {type(msg).__name__} within "
                                  f"{self.patience_s:g}s: {why}")
            await trio.sleep(delay)

    async def do(self, task: str, params, sector: SectorRef, sector_size: int, *,
                 priority: int = 0, cause: str = "") -> str:
        try:
            blob = check_params(task, params)
        except ValueError as e:
            raise TrackerError(str(e)) from None
        reply, _ = await self._call(W.MgrDo(task=task, params=blob, sector=sector,
                                            sector_size=sector_size, priority=priority))
        return reply.work_id

    async def wait(self, work_id: str) -> bytes:
        while True:
            reply, buffers = await self._call(W.MgrWait(work_id=work_id, timeout_s=5.0), timeout=15.0)
            if reply.finished:
                return bytes(memoryview(buffers[0])) if buffers else b""

    async def consume(self, work_id: str) -> None:
        try:
            await self._call(W.MgrConsume(work_id=work_id))
        except UnknownWork:
            # an earlier try consumed it and its answer was lost (the manager restarted)
            log.info("work %s was already consumed", work_id[:12])

    async def abort(self, job: str) -> str:
        reply, _ = await self._call(W.MgrAbort(job=job))
        return reply.work_id
