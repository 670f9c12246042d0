"""The worker's shell: registers on the bus and keeps its resource report fresh."""
from __future__ import annotations

import pathlib

import trio

from bus.peer import Peer
from nodes.config import NodeConfig
from nodes.worker import resources

REPORT_EVERY_S = 5.0


class WorkerNode:
    def __init__(self, cfg: NodeConfig):
        self.cfg = cfg
        self._gpus = resources.gpus()             # hardware does not change; usage does
        self.peer = Peer(name=cfg.name, role="worker", cfg=cfg.bus,
                         capabilities=self.capabilities())

    def capabilities(self) -> dict:
        return {"resources": resources.snapshot(self._gpus)}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        pathlib.Path(self.cfg.repo).mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.peer.run)
            task_status.started(self)
            while True:
                await trio.sleep(REPORT_EVERY_S)
                self.peer.update_capabilities(self.capabilities())
