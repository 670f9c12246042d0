"""`zqnode devnet`: a whole cluster in one process, with no configuration. A bus hub, the
devnet chain (real PoRep and WindowPoSt verifiers), the manager with the sealing state
machine, the scheduler, workers (each task in its own process) and the poster, all
keeping their state under one directory; a few CC sectors pledged once, and a progress
line every few seconds. Run again with the same directory and everything goes on where
it stopped. With `poster=False` (`--no-poster`) the poster is left out, to be run as its
own process (`zqnode start --role poster`, with the poster.toml the devnet writes), so it
can be stopped or killed alone."""
from __future__ import annotations

import json
import os
import logging
import pathlib
import time
from typing import Callable

import msgspec
import trio

from zqnode.bus import keys
from zqnode.bus.config import BusConfig
from zqnode.bus.hub import ZmqHub
from zqnode.nodes.chain.config import ChainConfig
from zqnode.nodes.chain.core import Genesis, MinerSpec
from zqnode.nodes.chain.node import ChainNode
from zqnode.nodes.chain.policy import next_deadline
from zqnode.nodes import observe
from zqnode.nodes.config import NodeConfig
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.proofs.params import SEAL_PROOFS, parse_sector_size

log = logging.getLogger("zqnode.devnet")

MINER = 1000
POST_ADDRESS = "t0101"                  # the devnet miner's control address: PoSt messages
SIZES = ("2KiB", "8MiB")
DONE = (S.PROVING, S.REMOVED, S.ABORTED)


class DevnetError(ValueError):
    pass


def seal_proof_for(size: str, synthetic: bool = False) -> int:
    """The V1_1 seal proof of a devnet sector size (2KiB, 8MiB or 512MiB), or its synthetic
    PoRep twin (FIP-0059)."""
    try:
        n = parse_sector_size(size)
    except ValueError as e:
        raise DevnetError(str(e)) from None
    if n not in (2048, 8 << 20, 512 << 20):
        raise DevnetError(f"the devnet seals 2KiB, 8MiB or 512MiB sectors, not {size}")
    suffix = "V1_1_Feat_SyntheticPoRep" if synthetic else "V1_1"
    return next(p.id for p in SEAL_PROOFS if p.sector_size == n and p.name.endswith(suffix))


def human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


class ManagerLocator:
    """Where the poster finds a sector: at the worker the manager's storage index names
    (copies fetched elsewhere for PC2 or C1 may be stale)."""

    def __init__(self, manager, repos: dict[str, str]):
        self.manager, self.repos = manager, repos

    def locate(self, miner: int, number: int) -> str:
        from zqnode.nodes.sector_dirs import sector_dir
        worker = self.manager.tracker.locations.get((miner, number))
        return str(sector_dir(self.repos[worker], miner, number)) if worker in self.repos else ""


class Devnet:
    def __init__(self, *, base: str | pathlib.Path, bus: str, sectors: int = 4, sector_size: str = "",
                 epoch_seconds: float = 0.0, workers: int = 2, refresh: float = 2.0,
                 poster: bool = True, batching: bool = False, synthetic: bool = False,
                 lotus_listen: str = "", via_lotus: bool = False, lotus: str = "",
                 say: Callable[[str], None] = print):
        self.base = pathlib.Path(base).expanduser()
        self.lotus_listen, self.via_lotus, self.lotus = lotus_listen, via_lotus, lotus
        self.watcher = None
        self.bus, self.sectors, self.workers = bus, sectors, workers
        self.epoch_seconds, self.refresh, self.say = epoch_seconds, refresh, say
        self.with_poster, self.batching = poster, batching
        self.size = self._settle_size(sector_size)
        self.control = self._settle_control()
        self.seal_proof = seal_proof_for(self.size, self._settle_synthetic(synthetic))
        self.chain = self.manager = self.sealing = self.scheduler = self.poster = None
        self.worker_nodes: list = []
        self.address = ""
        self._all_proving = False
        self._awaiting_power = False     # all Proving, no power yet: say when the first PoSt lands

    def _settle_size(self, wanted: str) -> str:
        """The sector size is the repo's: fixed by its first run."""
        path = self.base / "devnet.json"
        stored = json.loads(path.read_text())["sector_size"] if path.exists() else ""
        if wanted:
            seal_proof_for(wanted)
        if stored and wanted and parse_sector_size(wanted) != parse_sector_size(stored):
            raise DevnetError(f"{self.base} holds a devnet of {stored} sectors; give another --repo "
                              f"for {wanted} sectors")
        size = stored or wanted or "2KiB"
        if not stored:
            self.base.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"sector_size": size}) + "\n")
        return size

    def _settle_control(self) -> list[str]:
        """The miner's control address, which the poster sends from (the worker sends the
        sealing messages): t0101 on a devnet created since there was one; an older devnet
        keeps the genesis it was created with."""
        path = self.base / "devnet.json"
        data = json.loads(path.read_text())
        if "control" not in data:
            data["control"] = [] if (self.base / "chain").exists() else [POST_ADDRESS]
            path.write_text(json.dumps(data) + "\n")
        return data["control"]

    def _settle_synthetic(self, wanted: bool) -> bool:
        """Synthetic PoRep is the miner's seal proof, fixed when its chain is created."""
        path = self.base / "devnet.json"
        data = json.loads(path.read_text())
        if "synthetic" not in data:
            data["synthetic"] = wanted and not (self.base / "chain").exists()
            path.write_text(json.dumps(data) + "\n")
        if wanted and not data["synthetic"]:
            raise DevnetError(f"{self.base} holds a devnet created without --synthetic; give another "
                              "--repo for a synthetic PoRep miner")
        return data["synthetic"]

    NODES = ("chain", "manager", "scheduler", "poster")

    def node_config(self, role: str, name: str, **sections) -> NodeConfig:
        repo = self.base / name.removeprefix("devnet-")
        return NodeConfig(role=role, name=name, repo=str(repo), **sections,
                          bus=BusConfig(address=self.address, key_dir=str(repo)))

    def provision_keys(self) -> pathlib.Path:
        """Curve keys for every node (kept across runs), the hub's allow-list naming each,
        and this machine's client key as admin, so `zqnode ... --bus` works from another
        terminal. Returns the client's key directory."""
        client = keys.key_dir(BusConfig(), "client")
        nodes = [(str(self.base / n), n, f"devnet-{n}") for n in self.NODES]
        nodes += [(repo, "worker", name) for name, repo in self.worker_repos().items()]
        keys.provision(self.base / "hub", [*nodes, (str(client), "admin", "")])
        return client

    def repos(self) -> list[pathlib.Path]:
        """The repo of every node this process runs (the hub keeps only keys)."""
        names = [n for n in self.NODES if n != "poster" or self.with_poster]
        return [self.base / n for n in names] + [pathlib.Path(r) for r in self.worker_repos().values()]

    def worker_repos(self) -> dict[str, str]:
        return {f"devnet-worker-{i}": str(self.base / f"worker-{i}") for i in range(1, self.workers + 1)}

    def node_configs(self) -> dict[str, NodeConfig]:
        """Every node's configuration but the hub's, by name, in start order (it names the
        hub at self.address): what `run` starts here, and what tools/chaos.py writes to
        files to start each node in its own process."""
        from zqnode.nodes.poster.config import PosterConfig
        from zqnode.nodes.worker.config import WorkerConfig
        from zqnode.nodes.sector_dirs import sectors_root

        roots = [str(sectors_root(r)) for r in self.worker_repos().values()]
        large = parse_sector_size(self.size) > 8 << 20      # an hour to seal: tickets live longer
        chain = ChainConfig(genesis=Genesis(network="devnet-large" if large else "devnet",
                                            miners=[MinerSpec(actor_id=MINER, seal_proof=self.seal_proof,
                                                              control=self.control)]),
                            verifier="proofs", epoch_seconds=self.epoch_seconds,
                            lotus_listen=self.lotus_listen,
                            lotus_token=str(self.base / "lotus-token") if self.lotus_listen else "")
        # the workers share this host: one sector each between ticket and PreCommit, so no
        # ticket waits for a CPU while it ages (200 epochs on the devnet)
        sealing = SealingConfig(miner=MINER, retry_base_s=1.0, retry_max_s=15.0, wait_deals_s=10.0,
                                max_sealing=self.workers, storage=roots,
                                sector_lifetime=200_000,   # room to extend (the devnet allows 1,000,000)
                                terminate_batch_wait_s=10.0)   # a proving period is 6.4 minutes here
        if self.batching:                  # batches of every sector; the devnet's tickets live 200 epochs
            sealing = msgspec.structs.replace(
                sealing, batch_precommits=True, max_precommit_batch=min(self.sectors, 256),
                precommit_batch_wait_s=60.0, precommit_batch_slack=50, aggregate_commits=True,
                max_commit_batch=min(self.sectors, 819), commit_batch_wait_s=60.0, commit_batch_slack=50)
        cfgs = [self.node_config("chain", "devnet-chain", chain=chain),
                self.node_config("manager", "devnet-manager", sealing=sealing),
                self.node_config("scheduler", "devnet-scheduler")]
        cores = max(1, (os.cpu_count() or 1) // self.workers)     # the workers share this host
        cfgs += [self.node_config("worker", name, worker=WorkerConfig(
                     ignore_resources=True, parent_cache=str(self.base / "parent-cache"), cores=cores))
                 for name in self.worker_repos()]
        cfgs.append(self.node_config("poster", "devnet-poster",
                                     poster=PosterConfig(miners=[MINER], storage=roots,
                                                         address=self.control[0] if self.control else "")))
        return {c.name: c for c in cfgs}

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        from zqnode.nodes.manager.node import ManagerNode
        from zqnode.nodes.poster.node import PosterNode
        from zqnode.nodes.scheduler.node import SchedulerNode
        from zqnode.nodes.worker.node import WorkerNode

        hub_cfg = BusConfig(address=self.bus, key_dir=str(self.base / "hub"))
        if hub_cfg.security_mode() == "curve":
            client = self.provision_keys()
            self.say(f"devnet: curve keys in {self.base}; the client key in {client} is an admin")
        async with trio.open_nursery() as nursery:
            hub = ZmqHub(hub_cfg)
            observe.hub(hub, "devnet-hub")
            self.address = await nursery.start(hub.run)
            cfgs = self.node_configs()
            chain = cfgs["devnet-chain"]
            if self.via_lotus:
                await self._chain_behind_lotus(nursery, chain)
            else:
                self.chain = ChainNode(chain.identity, chain.chain)
                await nursery.start(self.chain.run)

            manager = cfgs["devnet-manager"]      # runs the sector state machine
            self.manager = ManagerNode(manager.identity, manager.manager, manager.sealing)
            self.sealing = self.manager.sealing
            await nursery.start(self.manager.run)
            await self.sealing.ready.wait()

            self.scheduler = SchedulerNode(cfgs["devnet-scheduler"].identity, cfgs["devnet-scheduler"].scheduler)
            await nursery.start(self.scheduler.run)
            for name in self.worker_repos():
                node = WorkerNode(cfgs[name].identity, cfgs[name].worker)
                await nursery.start(node.run)
                self.worker_nodes.append(node)

            if self.with_poster:
                self.poster = PosterNode(cfgs["devnet-poster"].identity, cfgs["devnet-poster"].poster,
                                         locator=ManagerLocator(self.manager, self.worker_repos()))
                await nursery.start(self.poster.run)
            else:
                self._poster_elsewhere(cfgs["devnet-poster"].poster)
            self._started()
            task_status.started(self)
            await self._progress()

    async def _chain_behind_lotus(self, nursery, chain) -> None:
        """The chain on a bus of its own, serving the Lotus API; the cluster's chain role
        is the chain-watcher following it, as it would follow a Lotus node."""
        from zqnode.bus.memory import MemoryHub
        from zqnode.nodes.chain.lotus.watcher import LotusWatcher
        private = await nursery.start(MemoryHub(BusConfig(address=f"mem://devnet-chain-{os.getpid()}")).run)
        token = str(self.base / "lotus-token")
        cfg = msgspec.structs.asdict(chain.chain) | {"lotus_listen": self.lotus_listen or "127.0.0.1:0",
                                                     "lotus_token": token}
        self.chain = ChainNode(msgspec.structs.replace(chain.identity, bus=BusConfig(address=private)),
                               ChainConfig(**cfg))
        await nursery.start(self.chain.run)
        self.watcher = LotusWatcher(chain.identity, ChainConfig(
            lotus=self.lotus or self.chain.lotus_url, lotus_token_file=token, miners=[MINER], seal_proof=self.seal_proof))
        await nursery.start(self.watcher.run)

    def _poster_elsewhere(self, pcfg) -> None:
        """Write the poster's configuration (its key is provisioned already) and say how to
        start it."""
        path = self.base / "poster.toml"
        repo = self.base / "poster"
        path.write_text(f"[bus]\nkey_dir = {json.dumps(str(repo))}\n\n[poster]\n"
                        f"miners = {json.dumps(pcfg.miners)}\nstorage = {json.dumps(pcfg.storage)}\n"
                        f"address = {json.dumps(pcfg.address)}\n")
        self.say(f"devnet: no poster here; start it with: zqnode start --role poster --name "
                 f"devnet-poster --repo {repo} --config {path} --bus {self.address}")

    def _started(self) -> None:
        info = self.chain.chain
        self.say(f"devnet: bus hub at {self.address}; from another terminal, each with --bus "
                 f"{self.address}: zqnode status, zqnode sectors list, zqnode tail, "
                 f"zqnode chain head, zqnode proving info, zqnode sealing jobs")
        self.say(f"devnet: chain ({info.policy.name} policy, {self.chain.epoch_seconds:g} s epochs, "
                 f"real PoRep/PoSt verifiers), manager + sealing, scheduler, {self.workers} workers"
                 f"{', poster' if self.with_poster else ''}; miner f0{MINER}, {self.size} sectors")
        if self.chain.lotus_url:
            self.say(f"devnet: Lotus API on {self.chain.lotus_url} (HTTP too); admin token in "
                     f"{self.base / 'lotus-token'}"
                     + (f"; the cluster reaches the chain through the chain-watcher following it"
                        f"{' at ' + self.lotus if self.lotus else ''}" if self.via_lotus else ""))
        have = [s for s in self.sealing.core.sectors.values() if s.state not in (S.REMOVED, S.ABORTED)]
        if have:
            self.say(f"devnet: resuming {len(have)} sectors ({_counts(have)})")
        missing = self.sectors - len(have)
        if missing > 0:
            numbers = self.sealing.pledge(missing)
            self.say(f"devnet: pledged sector{'s' if len(numbers) > 1 else ''} "
                     f"{', '.join(map(str, numbers))}")

    async def _progress(self) -> None:
        while True:
            self.say(self.progress_line())
            live = [s for s in self.sealing.core.sectors.values()
                    if s.state not in (S.REMOVED, S.ABORTED)]
            chain = self.chain.chain
            power = chain.miner_view(MINER).power
            if live and all(s.state == S.PROVING for s in live) and not self._all_proving:
                self._all_proving = True
                self.say(f"devnet: all {len(live)} sectors are Proving (epoch {chain.head.epoch}); "
                         f"Ctrl-C stops, running again resumes")
                post = self._next_post()
                if not power and post is not None:
                    self._awaiting_power = True
                    self.say(f"devnet: power counts them once their first WindowPoSt lands "
                             f"(deadline {post[0]} opens at epoch {post[1]})")
            if self._awaiting_power and power:
                self._awaiting_power = False
                self.say(f"devnet: the first WindowPoSt landed (epoch {chain.head.epoch}): power "
                         f"{human(power)}")
            await trio.sleep(self.refresh)

    def _next_post(self) -> tuple[int, int] | None:
        """(index, open epoch) of the next deadline with partitions, the current one
        included; None while no sector is assigned to a deadline."""
        chain = self.chain.chain
        d = chain.miner_view(MINER).deadline
        used = [i for i, dl in enumerate(chain.miner(MINER).deadlines) if dl.partitions]
        ahead = min(((i - d.index) % chain.policy.period_deadlines for i in used), default=None)
        if ahead is None:
            return None
        return ((d.index + ahead) % chain.policy.period_deadlines,
                d.open + ahead * chain.policy.challenge_window)

    def progress_line(self) -> str:
        chain = self.chain.chain
        m = chain.miner_view(MINER)
        d = m.deadline
        nd = next_deadline(d, chain.policy)
        upcoming = self._next_post()
        post = ""
        if upcoming is not None:
            post = (f", PoSt now (dl {d.index})" if upcoming[0] == d.index
                    else f", next PoSt dl {upcoming[0]} at {upcoming[1]}")
        sectors = list(self.sealing.core.sectors.values())
        jobs = [w for w in self.manager.jobs() if w.state in ("queued", "running")]
        job_text = ", ".join(f"{w.task} s{w.number}" + (f"@{w.worker.removeprefix('devnet-')}" if w.worker
                                                         else "") for w in jobs[:6])
        job_text += f" +{len(jobs) - 6}" if len(jobs) > 6 else ""
        posts = ""
        if self.poster is not None and self.poster.store is not None:
            outcomes = self.poster.store.outcomes(MINER, limit=10_000)
            proven = sum(1 for o in outcomes if o.status == "proven")
            missed = sum(1 for o in outcomes if o.status == "missed")
            posts = f" | PoSt {proven} proven, {missed} missed"
        paused = [s.number for s in sectors if s.paused]
        return (f"{time.strftime('%H:%M:%S')} epoch {chain.head.epoch} | deadline {d.index} "
                f"[{d.open},{d.close}) next {nd.index} at {nd.open}{post} | power {human(m.power)}"
                f" | sectors {len(sectors)}: {_counts(sectors) or '-'}"
                + (f" (paused {','.join(map(str, paused))})" if paused else "")
                + f" | jobs: {job_text or '-'}{posts}")


def _counts(sectors) -> str:
    counts: dict[str, int] = {}
    for s in sectors:
        counts[s.state] = counts.get(s.state, 0) + 1
    order = {st: i for i, st in enumerate(S.ALL)}
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)))
