"""A devnet-like cluster for tests of what operators see (metrics, `zqnode status`): the
devnet chain (accepting every proof), the manager with its sector state machine, the
scheduler, two workers running the fake task table inline and a poster with the fake
prover, all on the hub at `address`. `start_cluster` runs them in the caller's nursery:
in memory under a mock clock, or over real sockets; `cluster_in_thread` runs them with
their own hub over ipc in a thread, for commands the test runs (`zqnode status`) and
scrapes of the /metrics endpoint."""
from __future__ import annotations

import contextlib
import hashlib
import pathlib
import threading

import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.manager.node import ManagerNode
from zqnode.nodes.poster.checker import SectorChecker
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.node import PosterNode
from zqnode.nodes.poster.prover import FakeProver
from zqnode.nodes.wire.sectors import WorkerResources
from zqnode.nodes.scheduler.node import SchedulerNode
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.worker.executor import InlineExecutor
from zqnode.nodes.worker.node import WorkerNode
from zqnode.proofs import commp

TABLE = "tests.nodes.observe.cluster"         # this module's TASKS: quick fakes of CC sealing


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _mark(ctx, task: str) -> None:
    """A file per stage: the sector is held here (another worker fetches it from here)."""
    ctx.sector_dir.mkdir(parents=True, exist_ok=True)
    (ctx.sector_dir / f"{task}.fake").write_bytes(task.encode())


def _pc1(ctx, p: P.PC1Params) -> P.PC1Result:
    _mark(ctx, "PC1")
    # a committed-capacity sector's comm_d is the zero data's, as the state machine checks
    return P.PC1Result(comm_d=commp.commd([], ctx.sector_size),
                       replica_id=_h(b"r", str(ctx.number).encode(), p.ticket))


def _pc2(ctx, p: P.PC2Params) -> P.PC2Result:
    _mark(ctx, "PC2")
    d = commp.commd([], ctx.sector_size)
    return P.PC2Result(comm_d=d, comm_r=_h(b"R", d, str(ctx.number).encode()), comm_c=_h(b"c"),
                       comm_r_last=_h(b"l"))


def _c1(ctx, p: P.C1Params) -> P.C1Result:
    _mark(ctx, "C1")
    return P.C1Result(proof=_h(b"proof", str(ctx.number).encode(), p.seed), challenges=[[1]])


def _fin(ctx, p: P.FINParams) -> P.FINResult:
    _mark(ctx, "FIN")
    return P.FINResult(removed=[])


TASKS = {"PC1": _pc1, "PC2": _pc2, "C1": _c1, "FIN": _fin}


class Cluster:
    def __init__(self, address: str, root: pathlib.Path, prefix: str):
        self.address, self.root, self.prefix = address, pathlib.Path(root), prefix
        self.chain = self.manager = self.scheduler = self.poster = None
        self.workers: list[WorkerNode] = []

    def me(self, name: str) -> NodeIdentity:
        return NodeIdentity(name=f"{self.prefix}-{name}", repo=str(self.root / name),
                            bus=BusConfig(address=self.address))


async def start_cluster(nursery, address: str, root, prefix: str, *, epoch_seconds: float = 0.0,
                        clock=None, gates: dict[str, trio.Event] | None = None) -> Cluster:
    """The cluster's nodes, started. `gates[task]`: tasks of that type wait for it."""
    c = Cluster(address, root, prefix)
    kw = {"clock": clock} if clock is not None else {}
    c.chain = ChainNode(c.me("chain"),
                        ChainConfig(verifier="accept", epoch_seconds=epoch_seconds), **kw)
    await nursery.start(c.chain.run)
    c.manager = ManagerNode(c.me("manager"), ManagerConfig(), SealingConfig(
        retry_base_s=0.5, retry_max_s=1.0, wait_deals_s=1.0))
    c.manager.sealing.verify_seal = lambda **kw: True
    await nursery.start(c.manager.run)
    await c.manager.sealing.ready.wait()
    c.scheduler = SchedulerNode(c.me("scheduler"), SchedulerConfig())
    await nursery.start(c.scheduler.run)
    for i in (1, 2):
        w = WorkerNode(c.me(f"worker-{i}"), WorkerConfig(table=TABLE),
                       executor=InlineExecutor(TABLE, gates),
                       resources_fn=lambda: WorkerResources(cpus=8, mem_physical=16 << 30,
                                                            mem_used=1 << 30))
        await nursery.start(w.run)
        c.workers.append(w)
    healthy = SectorChecker(lambda seal_proof, sector: "", in_thread=False)
    c.poster = PosterNode(c.me("poster"), PosterConfig(), prover=FakeProver(),
                          checker=healthy)
    await nursery.start(c.poster.run)
    return c


async def until(pred, step: float = 0.5, limit: float = 10_000.0) -> None:
    with trio.fail_after(limit):
        while not pred():
            await trio.sleep(step)


class ClusterThread:
    """A cluster running in its own thread: `address` (its hub), `cluster`, `metrics_url`."""

    def __init__(self):
        self.address = self.metrics_url = ""
        self.cluster: Cluster | None = None
        self.gates: dict[str, trio.Event] = {}
        self.token = self.cancel = None

    def release(self, task: str) -> None:
        """Let the tasks of this type held at their gate go on."""
        trio.from_thread.run_sync(self.gates[task].set, trio_token=self.token)


@contextlib.contextmanager
def cluster_in_thread(root, prefix: str, *, epoch_seconds: float = 0.05, hold: tuple[str, ...] = (),
                      metrics_listen: str = "", pledge: int = 0):
    """start_cluster with its own ZmqHub on ipc (in `root`), in a thread; tasks of the
    types in `hold` wait for `release`; `pledge` CC sectors are pledged at once; a
    /metrics server when `metrics_listen` is given."""
    from zqnode.nodes import observe
    box, ready = ClusterThread(), threading.Event()
    failed: list[BaseException] = []

    async def serve():
        with trio.CancelScope() as cs:
            box.cancel, box.token = cs, trio.lowlevel.current_trio_token()
            box.gates = {task: trio.Event() for task in hold}
            async with trio.open_nursery() as n:
                hub = ZmqHub(BusConfig(address=f"ipc://{root}/bus"))
                observe.hub(hub, f"{prefix}-hub")
                box.address = await n.start(hub.run)
                if metrics_listen:
                    box.metrics_url = await n.start(observe.MetricsServer(metrics_listen,
                                                                          observe.REGISTRY).run)
                box.cluster = await start_cluster(n, box.address, root, prefix,
                                                  epoch_seconds=epoch_seconds, gates=box.gates)
                if pledge:
                    box.cluster.manager.sealing.pledge(pledge)
                ready.set()

    def main():
        try:
            trio.run(serve)
        except BaseException as e:          # shown by the waiting test
            failed.append(e)
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(30) or failed:
        raise RuntimeError(f"the cluster did not start: {failed[:1]}")
    try:
        yield box
    finally:
        trio.from_thread.run_sync(box.cancel.cancel, trio_token=box.token)
        thread.join(10)
