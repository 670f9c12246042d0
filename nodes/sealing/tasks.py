"""How the state machine has tasks done: through the manager's call tracker, which gives
the same work (task, sector, params) the same WorkID, so asking again after a restart
returns the stored result instead of computing it twice.

    work_id = await tasks.do(cmd, miner, sector_size)    # persisted before it answers
    result = await tasks.wait(work_id)                   # the task's result struct, or TaskError
    await tasks.consume(work_id)                         # once the result is in the sector's record

Results carry the worker's field names: AP comm_p/payload_size/padded_size/offset, PC1
comm_d/replica_id, PC2 comm_d/comm_r, C1 proof, UNS data."""
from __future__ import annotations

from typing import Any, Protocol

from zqnode.nodes.sealing.commands import RunTask


class TaskError(Exception):
    """The task ran and failed (or was aborted): `error` says why."""

    def __init__(self, error: str, work_id: str = ""):
        super().__init__(error)
        self.error, self.work_id = error, work_id


class Tasks(Protocol):
    async def do(self, cmd: RunTask, miner: int, sector_size: int) -> str: ...
    async def wait(self, work_id: str) -> Any: ...
    async def consume(self, work_id: str) -> None: ...
    async def drop_sector(self, miner: int, number: int) -> None:
        """Abort the sector's unfinished work and forget all its results."""
    def dropped_files(self, miner: int, number: int) -> None:
        """The sector's files were deleted: no worker holds them any more."""
