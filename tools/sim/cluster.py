"""A whole simulated cluster: the chain, the manager (call tracker + sector state
machine), the scheduler, the workers and the poster on one simulated bus, driven by one
discrete-event loop; plus the pledger that keeps sealing busy and, with chaos, the
failures. `Simulation(...).run()` returns the summary (a dict, JSON-ready)."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zqnode.nodes.chain.policy import Policy
from zqnode.nodes.chain.verifiers import FAKE
from zqnode.nodes.sealing.config import SealingConfig

from . import chain as simchain
from . import tasks as T
from .config import Cluster, Profile
from .loop import Loop
from .manager import SimManager
from .metrics import Metrics
from .net import Net, NetChaos
from .poster import SimPoster
from .scheduler import SimScheduler
from .sealing import SimSealing
from .worker import SimWorker

MINER = 1000
TICK_S = 60.0                # scheduler ticks (more come right after a worker may go silent)
REORG_KEEP = 4               # with chaos the chain keeps this many states: reorgs up to depth 3


@dataclass(frozen=True)
class Chaos:
    """Failures per simulated day (drawn from the seed), and the bus's bad luck."""
    worker_crashes: float = 0.5          # per worker per day
    worker_down_s: tuple[float, float] = (30.0, 900.0)
    manager_restarts: float = 4.0        # per day
    manager_down_s: tuple[float, float] = (5.0, 120.0)
    reorgs: float = 6.0                  # per day, depth 1..REORG_KEEP-1
    net: NetChaos = field(default_factory=lambda: NetChaos(slow_p=0.02, slow_s=(0.5, 20.0),
                                                           lost_p=0.005))


class Simulation:
    def __init__(self, cluster: Cluster, profile: Profile, policy: Policy, *, sectors: int = 0,
                 seal: int | None = None, days: float = 1.0, seed: int = 0, chaos: Chaos | None = None,
                 batching: bool = False,
                 progress: Callable[[str], None] | None = None):
        if sectors < 0 or (seal is not None and seal < 0) or not days > 0:
            raise ValueError("sectors and seal must be >= 0 and days > 0")
        self.cluster, self.profile, self.policy = cluster, profile, policy
        self.days, self.seed, self.chaos, self.progress = days, seed, chaos, progress
        self.proving_sectors, self.seal_limit = sectors, seal
        self.rng = random.Random(seed)                 # durations
        self.chaos_rng = random.Random(seed * 7919 + 1)
        self.loop = Loop()
        self.metrics = Metrics()
        self.net = Net(self.loop, random.Random(seed * 104729 + 2), chaos=chaos.net if chaos else None)
        self.chain = simchain.new_chain(policy.name, profile.seal_proof, FAKE, miner=MINER,
                                        keep_states=REORG_KEEP if chaos else 0)
        # history before the run: old enough for seal tickets and a whole proving period
        self.chain.advance(max(policy.seal_randomness_lookback, policy.proving_period) + 1)
        simchain.add_proving_sectors(self.chain, MINER, sectors, T.cc_comm_d(profile.sector_size))
        self.start_epoch = self.chain.head.epoch
        self.scheduler = SimScheduler(self, cluster.scheduler)
        self.manager = SimManager(self)
        self.workers: dict[str, SimWorker] = {}
        for g in cluster.groups:
            for i in range(g.count):
                name = f"{g.name}-{i + 1:03d}"
                self.workers[name] = SimWorker(self, name, g)
        # batching: Lotus's defaults (BatchPreCommits and AggregateCommits on, 24 h waits)
        batch = dict(batch_precommits=True, aggregate_commits=True) if batching else {}
        self.sealing = SimSealing(self, SealingConfig(miner=MINER, first_number=sectors + 1, **batch))
        self.manager.sealing = self.sealing
        self.poster = SimPoster(self)
        for node in (self.scheduler, self.manager, self.poster, *self.workers.values()):
            self.net.add(node)
        self.pc1_slots = self._pc1_slots()
        self.end = days * 86400.0
        self.reorgs = 0
        self.ran = False

    def _pc1_slots(self) -> int:
        """PC1 tasks the cluster runs at once (the limit, or what RAM and cores allow)."""
        slots = 0
        for w in self.workers.values():
            if "PC1" in w.group.tasks:
                need = w.needs["PC1"]
                fit = min(w.group.ram // max(need.mem, 1), w.group.cpus // max(need.threads, 1))
                slots += min(w.group.limits.get("PC1", fit), fit)
        return slots

    def duration(self, task: str) -> float:
        base = self.profile.duration(task)
        j = self.profile.jitter
        return base * (1 + self.rng.uniform(-j, j)) if j else base

    def drop_files(self, number: int) -> None:
        for w in self.workers.values():
            w.files.pop(number, None)

    # ---- the clocks -----------------------------------------------------------------------------
    def _epoch(self) -> None:
        change = self.chain.produce(self.loop.now)
        self._head(change)
        self.loop.after(self.policy.epoch_seconds, self._epoch)

    def _head(self, change) -> None:
        head = self.chain.head.epoch
        self.sealing.on_head(head, bool(change.reverted))
        self.poster.on_head(change)
        self._pledge()
        if self.progress and head % 240 == 0:
            self.progress(f"day {self.loop.now / 86400:.2f}: epoch {head}, sealed "
                          f"{len(self.metrics.sealed)}, deadlines {len(self.metrics.deadlines)}")

    def _tick(self) -> None:
        self.scheduler.tick()
        self.loop.after(TICK_S, self._tick)

    def _pledge(self) -> None:
        """Keep every PC1 slot busy (or stop at --seal sectors)."""
        if not self.sealing.up:
            return
        want = self.pc1_slots - self.sealing.waiting_for_pc1()
        if self.seal_limit is not None:
            want = min(want, self.seal_limit - self.metrics.pledged)
        for _ in range(max(want, 0)):
            self.sealing.pledge()

    # ---- chaos -------------------------------------------------------------------------------------
    def _plan_chaos(self) -> None:
        c, rng = self.chaos, self.chaos_rng
        for name in self.workers:
            for at in _poisson(rng, c.worker_crashes * self.days, self.end):
                self.loop.at(at, self._crash_worker, name, rng.uniform(*c.worker_down_s))
        for at in _poisson(rng, c.manager_restarts * self.days, self.end):
            self.loop.at(at, self._crash_manager, rng.uniform(*c.manager_down_s))
        for at in _poisson(rng, c.reorgs * self.days, self.end):
            self.loop.at(at, self._reorg, rng.randint(1, REORG_KEEP - 1))

    def _crash_worker(self, name: str, down_s: float) -> None:
        w = self.workers[name]
        if not w.up:
            return
        w.crash()
        cfg = self.scheduler.core.config
        for after in (cfg.disable_after_s, cfg.remove_after_s):
            if after < down_s:                 # the scheduler notices the silence
                self.loop.after(after + 0.5, self.scheduler.tick)
        self.loop.after(down_s, w.restart)

    def _crash_manager(self, down_s: float) -> None:
        if not self.manager.up:
            return
        self.manager.crash()
        self.loop.after(down_s, self._restart_manager)

    def _restart_manager(self) -> None:
        self.manager.restart()
        self.poster.manager_restarted()

    def _reorg(self, depth: int) -> None:
        change = self.chain.reorg(depth, self.loop.now)
        self.reorgs += 1
        self._head(change)

    # ---- running -----------------------------------------------------------------------------------
    def run(self) -> dict:
        if self.ran:
            raise RuntimeError("a Simulation runs once")
        self.ran = True
        wall = time.process_time(), time.perf_counter()
        for w in self.workers.values():
            w.start()
        self.manager.start()
        self.sealing.start()
        self.poster.start()
        self._pledge()
        self.loop.after(self.policy.epoch_seconds, self._epoch)
        self.loop.after(0.5, self._tick)
        if self.chaos:
            self._plan_chaos()
        self.loop.run(self.end)
        summary = self.summary()
        summary["wall_seconds"] = round(time.perf_counter() - wall[1], 2)
        summary["cpu_seconds"] = round(time.process_time() - wall[0], 2)
        return summary

    def summary(self) -> dict:
        from .report import summarise
        return summarise(self)


def _poisson(rng: random.Random, mean: float, end: float) -> list[float]:
    """Times in [0, end) of a Poisson process with `mean` events over it."""
    out, t = [], 0.0
    if mean <= 0:
        return out
    while True:
        t += rng.expovariate(mean / end)
        if t >= end:
            return out
        out.append(t)
