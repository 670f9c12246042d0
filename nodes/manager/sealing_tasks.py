"""The state machine's tasks through the manager's call tracker (in the same process):
a RunTask command becomes the task's params struct (nodes.wire.params) and a `do` on
the manager; the same command asked again after a restart is the same WorkID, so the
tracker answers it from what it stored."""
from __future__ import annotations

import logging
import pathlib

import trio

from zqnode.nodes.manager.errors import WorkFailed
from zqnode.nodes.manager.errors import TrackerError, UnknownWork
from zqnode.nodes.manager.tracker import FINISHED
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing.tasks import TaskError
from zqnode.nodes.wire import params as P

log = logging.getLogger("zqnode.sealing.tasks")


def task_params(cmd: C.RunTask):
    """The worker's params struct for a RunTask command."""
    if isinstance(cmd, C.RunAddPiece):
        return P.APParams(seal_proof=cmd.seal_proof, piece=pathlib.Path(cmd.path).read_bytes(),
                          index=cmd.index, update=cmd.update)
    if isinstance(cmd, C.RunReplicaUpdate):
        return P.RUParams(comm_r_old=cmd.comm_r_old)
    if isinstance(cmd, C.RunProveReplicaUpdate):
        return P.PR1Params(comm_r_new=cmd.comm_r_new)
    if isinstance(cmd, C.RunFinalizeReplicaUpdate):
        return P.FRUParams(keep_unsealed=cmd.keep_unsealed, release_key=cmd.release_key,
                           comm_r_new=cmd.comm_r_new, drop_update=cmd.drop_update)
    if isinstance(cmd, C.RunPreCommit1):
        return P.PC1Params(seal_proof=cmd.seal_proof, ticket=cmd.ticket)
    if isinstance(cmd, C.RunPreCommit2):
        return P.PC2Params(ticket=cmd.ticket)
    if isinstance(cmd, C.RunCommit1):
        return P.C1Params(seed=cmd.seed, ticket=cmd.ticket)
    if isinstance(cmd, C.RunFinalize):
        return P.FINParams(keep_unsealed=cmd.keep_unsealed)
    if isinstance(cmd, C.RunUnseal):
        return P.UNSParams(piece=None if cmd.piece < 0 else cmd.piece)
    raise TypeError(f"no task params for {type(cmd).__name__}")


class TrackerTasks:
    def __init__(self, manager):
        self.manager = manager                 # nodes.manager.node.ManagerNode
        self._tasks: dict[str, str] = {}       # work id -> task type (to decode results)

    async def do(self, cmd: C.RunTask, miner: int, sector_size: int) -> str:
        params = await trio.to_thread.run_sync(task_params, cmd) if isinstance(cmd, C.RunAddPiece) \
            else task_params(cmd)
        try:
            wid = await self.manager.do(cmd.task, params, SectorRef(miner=miner, number=cmd.sector),
                                        sector_size, priority=cmd.priority, cause=cmd.cause)
        except TrackerError as e:
            raise TaskError(f"the call tracker refused {cmd.task}: {e}") from None
        self._tasks[wid] = cmd.task
        return wid

    async def wait(self, work_id: str):
        try:
            blob = await self.manager.wait(work_id)
        except WorkFailed as e:                # WorkAborted too
            raise TaskError(e.error, work_id) from None
        except UnknownWork as e:
            raise TaskError(str(e), work_id) from None
        task = self._tasks.get(work_id) or self.manager.tracker.works[work_id].task
        return P.decode_result(task, blob)

    async def consume(self, work_id: str) -> None:
        try:
            await self.manager.consume(work_id)
        except UnknownWork:
            pass                               # consumed before a restart
        self._tasks.pop(work_id, None)

    async def drop_sector(self, miner: int, number: int) -> None:
        self.manager.drop_sector(miner, number)
        self._tasks = {wid: t for wid, t in self._tasks.items() if wid in self.manager.tracker.works}
        await trio.lowlevel.checkpoint()

    def dropped_files(self, miner: int, number: int) -> None:
        """The sector's files were deleted: no worker holds them any more."""
        self.manager.dropped(miner, number)

    async def tidy(self, miner: int, number: int, keep: C.RunTask | None) -> None:
        """After a restart: forget the sector's results that its current state no longer
        needs (a Save committed just before the kill, its Consume never sent)."""
        wanted = ""
        if keep is not None:
            params = await trio.to_thread.run_sync(task_params, keep)
            wanted = P.work_id(keep.task, miner, number, P.check_params(keep.task, params))
        for w in [w for w in self.manager.tracker.works.values()
                  if (w.miner, w.number) == (miner, number) and w.work_id != wanted]:
            if w.state in FINISHED:
                log.info("sector %d: forgetting %s result %s (no longer needed)", number, w.task,
                         w.work_id[:12])
                await self.consume(w.work_id)
