"""WindowPoSt as WDP tasks on the cluster: manager, scheduler and a worker running the
real sealing table in memory; the proof the worker makes verifies."""
import functools

import pytest
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.manager import api
from zqnode.nodes.manager.node import ManagerNode
from zqnode.nodes.manager.pipeline import seal_sector
from zqnode.nodes.poster.prover import PartitionInput, ProveRequest, ProverError, SchedulerProver, SectorInput
from zqnode.nodes.wire.sectors import WorkerResources
from zqnode.nodes.scheduler.node import SchedulerNode
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import InlineExecutor
from zqnode.nodes.worker.node import WorkerNode
from zqnode.nodes.wire.params import WDPResult
from zqnode.proofs import post

TABLE = "zqnode.nodes.worker.sealing"


async def _scoped(run, *, task_status=trio.TASK_STATUS_IGNORED):
    async with trio.open_nursery() as inner:
        await inner.start(run)
        task_status.started()


def me(bus, tmp_path, name) -> NodeIdentity:
    return NodeIdentity(name=name, repo=str(tmp_path / name), bus=BusConfig(address=bus))


async def test_wdp_tasks_prove_a_partition_on_a_worker(nursery, tmp_path, autojump_clock):
    bus = await nursery.start(MemoryHub(BusConfig(address="mem://wdp")).run)
    mgr = ManagerNode(me(bus, tmp_path, "mgr"), ManagerConfig(), SealingConfig())
    for node in (mgr, SchedulerNode(me(bus, tmp_path, "sched"), SchedulerConfig()),
                 WorkerNode(me(bus, tmp_path, "w1"), WorkerConfig(table=TABLE),
                            executor=InlineExecutor(TABLE),
                            resources_fn=lambda: WorkerResources(cpus=8, mem_physical=64 << 30))):
        await nursery.start(functools.partial(_scoped, node.run))
    sealed = [await seal_sector(mgr, 1000, n, "StackedDrg2KiBV1_1") for n in (1, 2)]

    poster = Peer(name="poster", role="poster", cfg=BusConfig(address=bus))
    await nursery.start(poster.run)
    raw = bytes(range(200, 232))                    # the chain's raw draw: the task masks it
    sectors = [SectorInput(s["sector"], bytes.fromhex(s["comm_r"])) for s in sealed]
    proofs = await SchedulerProver(poster).prove(ProveRequest(
        miner=1000, seal_proof=5, randomness=raw, partitions=[PartitionInput(index=0, sectors=sectors)]))

    assert [(p.index, p.proven, p.skipped) for p in proofs] == [(0, [1, 2], [])]
    assert post.verify_window_post(seal_proof=5, randomness=post.canonical_randomness(raw),
                                   sectors=[(s.number, s.comm_r) for s in sectors], proof=proofs[0].proof)
    assert mgr.jobs() == []                          # every WDP result was consumed


async def test_a_wdp_result_naming_sectors_outside_the_partition_is_a_failed_proof(monkeypatch):
    """A worker's word on which sectors it skipped is taken only for the partition's own."""
    async def hostile(*args, **kw):
        return WDPResult(partitions=[], skipped=[(1, "unreadable"), (77, "unreadable")])
    monkeypatch.setattr(api, "run_task", hostile)
    prover = SchedulerProver(Peer(name="poster", role="poster", cfg=BusConfig(address="mem://none")))
    with pytest.raises(ExceptionGroup) as e:        # the poster takes any failure as a failed batch
        await prover.prove(ProveRequest(miner=1000, seal_proof=5, randomness=bytes(32), partitions=[
            PartitionInput(index=0, sectors=[SectorInput(1, bytes(32)), SectorInput(2, bytes(32))])]))
    assert e.group_contains(ProverError, match=r"names sectors not in it: \[77\]")
