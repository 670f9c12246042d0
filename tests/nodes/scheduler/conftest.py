"""Small builders shared by the scheduler tests (the `mk` fixture)."""
from types import SimpleNamespace

import pytest

from zqnode.nodes.scheduler import (SchedulerConfig, Scheduler, SectorRef, SelTask, StoragePath,
                                    TaskQueued, WorkerInfo, WorkerJoined, WorkerResources)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def res(cpus=32, mem=256 * GiB, used=0, swap=0, swap_used=0, gpus=0):
    return WorkerResources(cpus=cpus, mem_physical=mem, mem_used=used, mem_swap=swap,
                           mem_swap_used=swap_used, gpus=tuple(f"gpu{i}" for i in range(gpus)))


def info(tasks=("PC1",), seal=(), store=(), env=None, ignore=False, **kw):
    paths = tuple(StoragePath(id=p, can_seal=True) for p in seal)
    paths += tuple(StoragePath(id=p, can_store=True) for p in store)
    return WorkerInfo(hostname="host", tasks=tuple(tasks), resources=res(**kw), paths=paths,
                      resource_env=env or {}, ignore_resources=ignore)


def joined(worker, session="s1", cause=None, **kw):
    return WorkerJoined(worker=worker, session=session, info=info(**kw),
                        cause=cause or f"join {worker}")


def queued(rid, task="PC1", number=1, size=32 * GiB, prio=0, sel=None, prepare=None,
           miner=1000):
    return TaskQueued(request=rid, sector=SectorRef(miner=miner, number=number), task=task,
                      sector_size=size, priority=prio, selector=sel or SelTask(),
                      prepare=prepare, cause=f"q {rid}")


def sched(**config):
    return Scheduler(SchedulerConfig(**config))


@pytest.fixture
def mk():
    return SimpleNamespace(res=res, info=info, joined=joined, queued=queued, sched=sched,
                           KiB=KiB, MiB=MiB, GiB=GiB)
