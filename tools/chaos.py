"""Chaos over real processes: a devnet whose every node runs in its own process, nodes
killed -9 and restarted at random, reorgs, lost and delayed bus messages, then the
invariants of tools/chaos_checks.py.

    python tools/chaos.py --duration 300 --sectors 4 --workers 2 --seed 1 [--pause-hub] [--json]
    python tools/chaos.py --soak --duration 3600 --sectors 3       # keeps 3 sectors sealing

It provisions keys and writes each node's config the way `zqnode devnet` does
(nodes.devnet.Devnet.node_configs), starts `zqnode start --role R --config FILE`
for the hub, the chain (devnet policy, real verifiers), the manager with the sealing
state machine, the scheduler, the workers and the poster, each in its own process group,
and pledges --sectors CC sectors (with --pledge-every, one more now and then during the
chaos: every sector the manager has at the end counts as pledged). Then, for --duration
seconds, it picks (with a RNG seeded by --seed) a node at a random moment, kills its
process group with SIGKILL and restarts it after a random pause; with --pause-hub a
fifth of the actions SIGSTOP the hub for a while instead; unless --no-reorgs, some
revert the chain's last tipsets (`zqnode chain reorg`, no deeper than the devnet's ticket
lookback: deeper ones change tickets under landed pre-commits, which mainnet's lookback,
equal to finality, rules out); unless --no-net-faults, some delay or cut a node's link to
the hub (tools/chaos_net.py: every node but the hub talks to it through its own link).
With --soak, sectors are pledged whenever fewer than --sectors are sealing, for the whole
--duration (a long run under load; the same invariants at the end). Afterwards the cluster
settles with every node up: every sector sealed, every stored result acknowledged, then
each deadline holding sectors closes once more (at most --settle-timeout seconds). The
nodes are stopped (SIGTERM) and the invariants checked. It prints a report (one JSON
object with --json) and exits 1 when an invariant is violated, naming it, 2 when the
harness could not start the cluster. The run's directory (--repo, else a temporary one)
keeps every node's config, log and state, and the workers' task log.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import click
import msgspec

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zqnode.bus.address import free_tcp_address  # noqa: E402
from zqnode.bus.config import BusConfig  # noqa: E402
from zqnode.nodes.chain.policy import DEVNET  # noqa: E402
from zqnode.nodes.config import NodeConfig  # noqa: E402
from zqnode.nodes.configdoc import config_toml  # noqa: E402
from zqnode.nodes.devnet import MINER, Devnet
from tools import chaos_checks as checks  # noqa: E402
from tools.chaos_net import Link  # noqa: E402

HUB = "devnet-hub"
POST_NEEDS = (HUB, "devnet-chain", "devnet-poster")   # what a WindowPoSt needs up
REORG_DEPTH = DEVNET.seal_randomness_lookback         # deeper would change tickets (see above)


class ChaosError(RuntimeError):
    """The harness could not do its part (a node would not start, a pledge failed)."""


# -- processes ------------------------------------------------------------------------------

class Node:
    """One `zqnode start` process group; `up` keeps the intervals it ran (wall clock),
    `faults` those its link to the hub was delayed or cut."""

    def __init__(self, name: str, role: str, config: pathlib.Path, log: pathlib.Path, env: dict,
                 bus: str, link: Link | None = None):
        self.name, self.role, self.config, self.log, self.env = name, role, config, log, env
        self.bus, self.link = bus, link
        self.proc: subprocess.Popen | None = None
        self.up: list[tuple[float, float]] = []
        self.faults: list[tuple[float, float]] = []
        self.since = 0.0
        self.paused = False

    def reachable(self) -> list[tuple[float, float]]:
        """`up`, less the times its link was faulty."""
        spans = list(self.up)
        for a, b in self.faults:
            cut = []
            for s, e in spans:
                apart = b <= s or e <= a
                cut += [(s, e)] if apart else [p for p in ((s, a), (b, e)) if p[0] < p[1]]
            spans = cut
        return spans

    def start(self) -> None:
        with open(self.log, "a") as out:
            out.write(f"---- chaos: start at {time.time():.3f}\n")
            out.flush()
            self.proc = subprocess.Popen(
                # --bus as well: `zqnode start` lets its --bus default override the file's
                [sys.executable, "-m", "zqnode.nodes.cli", "start", "--role", self.role, "--config",
                 str(self.config), "--bus", self.bus], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        self.since = time.time()

    def wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if " running on " in text[text.rfind("---- chaos: start"):]:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise ChaosError(f"{self.name} did not start within {timeout:g}s; see {self.log}")

    def _down(self) -> None:
        self.up.append((self.since, time.time()))

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self) -> None:
        self._down()
        self.signal_group(signal.SIGKILL)
        self.proc.wait()

    def pause(self) -> None:
        self._down()
        self.signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.paused = False
        self.since = time.time()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._down()
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)          # the node, or task processes it left
        self.proc.wait()


class Cluster:
    def __init__(self, base: pathlib.Path, *, workers: int, epoch_seconds: float, sector_size: str = "2KiB",
                 links: bool = False):
        self.base, self.links = base, links
        self.bus = free_tcp_address()
        self.devnet = Devnet(base=base, bus=self.bus, sectors=0, sector_size=sector_size,
                             epoch_seconds=epoch_seconds, workers=workers, say=lambda _: None)
        self.devnet.address = self.bus
        self.client = base / "client"
        self.task_log = base / "tasks.log"
        (base / "configs").mkdir(parents=True, exist_ok=True)
        (base / "logs").mkdir(exist_ok=True)
        self.nodes: dict[str, Node] = {}

    def provision(self) -> None:
        """Keys (the Devnet's way: every node, and our client as admin) and config files."""
        os.environ["ZQNODE_KEY_DIR"] = str(self.client)
        self.devnet.provision_keys()
        hub = NodeConfig(role="bus", name=HUB, repo=str(self.base / "hub"),
                         bus=BusConfig(address=self.bus, key_dir=str(self.base / "hub")))
        env = {k: v for k, v in os.environ.items() if k != "ZQNODE_KEY_DIR"}
        env.update(PYTHONUNBUFFERED="1", ZQNODE_TASK_LOG=str(self.task_log))
        hub_port = int(self.bus.rpartition(":")[2])
        for cfg in [hub, *self.devnet.node_configs().values()]:
            path = self.base / "configs" / f"{cfg.name}.toml"
            path.write_text(config_toml(cfg))
            link = Link(hub_port) if self.links and cfg.name != HUB else None
            bus = f"tcp://127.0.0.1:{link.port}" if link else self.bus
            self.nodes[cfg.name] = Node(cfg.name, cfg.role, path, self.base / "logs" / f"{cfg.name}.log",
                                       env, bus, link)

    def start_all(self, timeout: float) -> None:
        for node in self.nodes.values():
            node.start()
            node.wait_running(timeout)

    def stop_all(self) -> None:
        for node in reversed(list(self.nodes.values())):
            if node.paused:
                node.resume()
            node.stop()
            if node.link:
                node.link.close()

    # -- what the nodes keep --
    def path(self, node: str, file: str) -> pathlib.Path:
        return self.base / node.removeprefix("devnet-") / file      # the Devnet's repo layout

    def worker_dbs(self) -> dict[str, pathlib.Path]:
        return {n: self.path(n, "calls.sqlite") for n in self.devnet.worker_repos()}

    def sealing_states(self) -> dict[int, str]:
        try:
            return checks.sealing_states(self.path("devnet-manager", "sealing.sqlite"))
        except (FileNotFoundError, sqlite3.Error):
            return {}

    def unacknowledged(self) -> int:
        n = 0
        for path in self.worker_dbs().values():
            try:
                n += sum(1 for c in checks.worker_calls(path) if c.state == "done" and c.ok
                         and not c.returned)
            except (FileNotFoundError, sqlite3.Error):
                pass
        return n

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess | None:
        """`zqnode ARGS` as our admin client, straight to the hub; None if it hung."""
        env = {**os.environ, "ZQNODE_KEY_DIR": str(self.client)}
        try:
            return subprocess.run([sys.executable, "-m", "zqnode.nodes.cli", *args, "--bus", self.bus],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def pledge(self, count: int, timeout: float) -> list[int]:
        """`zqnode sectors pledge` until the sealing store holds `count` sectors (a pledge
        whose answer was lost is not repeated)."""
        deadline = time.monotonic() + timeout
        error = ""
        while time.monotonic() < deadline:
            have = sorted(self.sealing_states())
            if len(have) >= count:
                return have
            out = self.cli("sectors", "pledge", "--count", str(count - len(have)), timeout=60)
            error = out.stderr.strip() if out else "timed out"
            time.sleep(0.5 if out and out.returncode == 0 else 2.0)
        raise ChaosError(f"could not pledge {count} sectors within {timeout:g}s: {error}")

    def pledge_one(self) -> bool:
        """One more sector, if the manager answers now (during the chaos it may not)."""
        out = self.cli("sectors", "pledge")
        return out is not None and out.returncode == 0

    def reorg(self, depth: int) -> list[int]:
        """The epochs a reorg of `depth` replaced ([] if the chain did not answer)."""
        out = self.cli("chain", "reorg", "--depth", str(depth), "--json")
        if out is None or out.returncode != 0:
            return []
        return sorted(t["epoch"] for t in json.loads(out.stdout)["reverted"])


# -- the run --------------------------------------------------------------------------------

class Action(msgspec.Struct):
    at: float                          # seconds into the chaos
    kind: str                          # kill | pause-hub | reorg | delay | cut | pledge | pledge-refused
    node: str
    down_s: float
    epochs: list[int] = []             # reorg: the epochs it replaced


class Plan(msgspec.Struct, kw_only=True):
    duration: float
    gap: tuple[float, float]           # seconds between actions: uniform in [MIN, MAX]
    down: tuple[float, float]          # seconds a node stays down, stopped or cut off
    pause_hub: bool = False
    reorgs: bool = True
    net_faults: bool = True
    pledge_every: float = 0.0          # pledge one more sector this often (0: never)
    keep_sealing: int = 0              # soak: pledge whenever fewer sectors are sealing


def run_chaos(cluster: Cluster, rng: random.Random, plan: Plan, say) -> list[Action]:
    """Until the plan's duration has passed: wait a random gap, then do one thing to the
    cluster (see `_pick`), and pledge as the plan says, so that sealing goes on under the
    chaos."""
    actions: list[Action] = []
    t0 = time.monotonic()
    next_pledge = plan.pledge_every
    while True:
        time.sleep(rng.uniform(*plan.gap))
        now = time.monotonic() - t0
        if now >= plan.duration:
            return actions
        sealing = sum(1 for s in cluster.sealing_states().values() if s not in checks.SEALED)
        due = plan.pledge_every and now >= next_pledge
        if due or sealing < plan.keep_sealing:
            next_pledge = now + plan.pledge_every if due else next_pledge
            actions.append(Action(at=round(now, 1), kind="pledge" if cluster.pledge_one()
                                  else "pledge-refused", node="devnet-manager", down_s=0.0))
        kind, victim = _pick(rng, plan, list(cluster.nodes))
        action = Action(at=round(time.monotonic() - t0, 1), kind=kind, node=victim,
                        down_s=0.0 if kind == "reorg" else round(rng.uniform(*plan.down), 1))
        say(f"chaos: {action.at:6.1f}s {kind} {victim}"
            + (f" for {action.down_s:g}s" if action.down_s else "")
            + f" (sectors: {_states(cluster.sealing_states())})")
        _act(cluster, rng, action)
        actions.append(action)


def _pick(rng: random.Random, plan: Plan, names: list[str]) -> tuple[str, str]:
    r = rng.random()
    if plan.pause_hub and r < 0.2:
        return "pause-hub", HUB
    if plan.reorgs and r < 0.3:
        return "reorg", "devnet-chain"
    if plan.net_faults and r < 0.5:
        return rng.choice(("delay", "cut")), rng.choice([n for n in names if n != HUB])
    return "kill", rng.choice(names)


def _act(cluster: Cluster, rng: random.Random, a: Action) -> None:
    node = cluster.nodes[a.node]
    if a.kind == "reorg":
        a.epochs = cluster.reorg(rng.randint(1, REORG_DEPTH))
    elif a.kind == "pause-hub":
        node.pause()
        time.sleep(a.down_s)
        node.resume()
    elif a.kind in ("delay", "cut"):
        getattr(node.link, a.kind)(a.down_s)
        node.faults.append((time.time(), time.time() + a.down_s))
        time.sleep(a.down_s)
    else:
        node.kill9()
        time.sleep(a.down_s)
        node.start()


def _states(states: dict[int, str]) -> str:
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def settle(cluster: Cluster, pledged: list[int], timeout: float, warmup: float, epoch_s: float,
           say) -> tuple[bool, float, int]:
    """Wait until every pledged sector is sealed (Proving, or faulty since) and every
    stored result acknowledged, then until each deadline holding sectors has closed once
    more, its sectors checked at least `warmup` (and two epochs) after that point, so it
    had to be proven. At most `timeout` seconds in all. Returns (settled, seconds to
    settle, the epoch waited for)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        states = cluster.sealing_states()
        if all(states.get(n) in checks.SEALED for n in pledged) and cluster.unacknowledged() == 0:
            break
        time.sleep(1.0)
    else:
        say(f"chaos: not settled within {timeout:g}s (sectors: {_states(cluster.sealing_states())})")
        return False, time.monotonic() - t0, 0
    settled = time.monotonic() - t0
    chain_db = cluster.path("devnet-chain", "chain.sqlite")
    genesis, _ = checks.read_tipsets(chain_db)
    head, state = checks.head_state(chain_db)
    closes = checks.next_closes(genesis, state, MINER, head + math.ceil(warmup / epoch_s) + 2)
    target = max(closes.values(), default=head)
    say(f"chaos: settled in {settled:.0f}s at epoch {head}; running to epoch {target} for the "
        f"WindowPoSts of deadlines {sorted(closes)}")
    while time.monotonic() - t0 < timeout and checks.head_state(chain_db)[0] <= target:
        time.sleep(1.0)
    return True, settled, target


def check_all(cluster: Cluster, pledged: list[int], warmup: float, actions: list[Action]) -> dict:
    base = cluster.base
    reorgs = [a.epochs for a in actions if a.kind == "reorg" and a.epochs]
    results = {
        "sectors_proving_once": lambda: checks.check_sectors(
            cluster.path("devnet-chain", "chain.sqlite"), cluster.path("devnet-manager", "sealing.sqlite"),
            pledged, MINER),
        "results_once": lambda: checks.check_results(cluster.task_log, cluster.worker_dbs()),
        "deadlines_made": lambda: checks.check_deadlines(
            cluster.path("devnet-chain", "chain.sqlite"),
            {n: node.reachable() for n, node in cluster.nodes.items()}, MINER, warmup, POST_NEEDS, reorgs),
        "databases_intact": lambda: checks.check_databases(sorted(base.rglob("*.sqlite"))),
    }
    report = {}
    for name, check in results.items():
        try:
            violations, info = check()
        except Exception as e:           # a store the check cannot read is itself a finding
            violations, info = [checks.Violation(name, f"could not check: {type(e).__name__}: {e}")], {}
        report[name] = {"ok": not violations, "violations": [v.detail for v in violations], **info}
    return report


def print_report(r: dict) -> None:
    print(f"chaos: {'OK' if r['ok'] else 'VIOLATED'}: seed {r['seed']}, {r['sectors']} {r['sector_size']} "
          f"sectors, {r['workers']} workers; {r['duration']:g}s of {'soak ' if r['soak'] else ''}chaos: "
          f"{r['kills']} kills and restarts, {r['hub_pauses']} hub pauses, {r['reorgs']} reorgs, "
          f"{r['link_faults']} link faults, {r['pledges']} pledges; settled {r['settled']} "
          f"in {r['settle_seconds']:.0f}s, ran to epoch {r['until_epoch']}; {r['wall_seconds']:.0f}s "
          f"in all; state in {r['repo']}")
    w = r["work"]
    print(f"  work: {w['task_runs']} task runs, {w['reruns']} re-runs; {w['wasted_task_s']:g}s of task "
          f"time wasted ({', '.join(f'{k} {v:g}s' for k, v in w['wasted_by_why'].items()) or 'none'}); "
          + ", ".join(f"{k} {t['runs']} runs for {t['results']} results" for k, t in w["per_task"].items()))
    for name in checks.INVARIANTS:
        inv = r["invariants"][name]
        figures = ", ".join(f"{k} {v}" for k, v in inv.items() if k not in ("ok", "violations"))
        print(f"  {'ok  ' if inv['ok'] else 'FAIL'} {name}: {figures}")
        for v in inv["violations"]:
            print(f"       - {v}")


@click.command()
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of kills and restarts.")
@click.option("--sectors", default=3, show_default=True, type=click.IntRange(1, 64))
@click.option("--sector-size", default="2KiB", show_default=True, type=click.Choice(["2KiB", "8MiB"]),
              help="8MiB sectors take long enough to seal that kills land inside tasks.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--pause-hub", is_flag=True, help="Also SIGSTOP/SIGCONT the hub at random.")
@click.option("--reorgs/--no-reorgs", default=True, show_default=True,
              help="Also revert the chain's last tipsets at random.")
@click.option("--net-faults/--no-net-faults", default=True, show_default=True,
              help="Also delay or cut a node's link to the hub at random (lost, late messages).")
@click.option("--soak", is_flag=True, help="Keep --sectors sectors sealing for the whole --duration.")
@click.option("--epoch-seconds", default=1.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--gap", default=(2.0, 8.0), show_default=True, type=(float, float),
              help="Seconds between actions: uniform in [MIN, MAX].")
@click.option("--down", default=(0.5, 5.0), show_default=True, type=(float, float),
              help="Seconds a killed node stays down (the hub stopped, a link faulty): uniform "
                   "in [MIN, MAX].")
@click.option("--pledge-every", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="During the chaos, pledge one more sector every this many seconds (0: never).")
@click.option("--settle-timeout", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds after the chaos for sectors to reach Proving and their deadlines to close.")
@click.option("--warmup", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds the poster, chain and hub must be up before a deadline's sectors are "
                   "checked (the Open of the deadline two before it) for it to count as makeable.")
@click.option("--repo", default="", help="Run directory [default: a new temporary one].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (progress to stderr).")
def main(duration, sectors, sector_size, workers, seed, pause_hub, reorgs, net_faults, soak, epoch_seconds,
         gap, down, pledge_every, settle_timeout, warmup, repo, as_json) -> None:
    """Chaos over real processes; exits 1 naming each violated invariant."""
    t0 = time.monotonic()
    base = pathlib.Path(repo).expanduser() if repo else pathlib.Path(tempfile.mkdtemp(prefix="zqchaos-"))
    base.mkdir(parents=True, exist_ok=True)
    if any(base.iterdir()):
        raise click.ClickException(f"{base} is not empty: give a new --repo")

    def say(line: str) -> None:
        click.echo(line, err=as_json)

    def interrupted(signum, frame):
        raise KeyboardInterrupt        # the finally below stops every node
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)   # a background job ignores SIGINT otherwise

    rng = random.Random(seed)
    cluster = Cluster(base, workers=workers, epoch_seconds=epoch_seconds, sector_size=sector_size,
                      links=net_faults)
    plan = Plan(duration=duration, gap=gap, down=down, pause_hub=pause_hub, reorgs=reorgs,
                net_faults=net_faults, pledge_every=pledge_every, keep_sealing=sectors if soak else 0)
    try:
        cluster.provision()
        say(f"chaos: starting {len(cluster.nodes)} nodes on {cluster.bus} in {base}")
        cluster.start_all(timeout=90)
        pledged = cluster.pledge(sectors, timeout=90)
        say(f"chaos: pledged sectors {', '.join(map(str, pledged))}")
        actions = run_chaos(cluster, rng, plan, say)
        pledged = sorted(cluster.sealing_states())        # with those pledged during the chaos
        ok, settled_s, until_epoch = settle(cluster, pledged, settle_timeout, warmup, epoch_seconds, say)
    except ChaosError as e:
        cluster.stop_all()                 # before the message: the nodes' ports are free then
        click.echo(f"chaos: the harness failed: {e}", err=True)
        sys.exit(2)
    finally:
        cluster.stop_all()
    invariants = check_all(cluster, pledged, warmup, actions)
    report = {
        "ok": all(i["ok"] for i in invariants.values()), "seed": seed, "sectors": len(pledged),
        "sector_size": sector_size,
        "workers": workers, "duration": duration, "pause_hub": pause_hub, "soak": soak, "repo": str(base),
        "kills": sum(1 for a in actions if a.kind == "kill"),
        "hub_pauses": sum(1 for a in actions if a.kind == "pause-hub"),
        "reorgs": sum(1 for a in actions if a.kind == "reorg" and a.epochs),
        "link_faults": sum(1 for a in actions if a.kind in ("delay", "cut")),
        "pledges": sum(1 for a in actions if a.kind == "pledge"),
        "killed": {n: sum(1 for a in actions if a.kind == "kill" and a.node == n) for n in cluster.nodes},
        "settled": ok, "settle_seconds": round(settled_s, 1), "until_epoch": until_epoch,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "violations": [f"{n}: {v}" for n, i in invariants.items() for v in i["violations"]],
        "invariants": invariants,
        "links": {n: node.link.counts for n, node in cluster.nodes.items() if node.link},
        "work": checks.work(cluster.task_log, {n: node.up for n, node in cluster.nodes.items()}), "actions": msgspec.to_builtins(actions),
        "up": {n: [[round(a, 3), round(b, 3)] for a, b in node.up] for n, node in cluster.nodes.items()},
    }
    if as_json:
        print(json.dumps(report))
    else:
        print_report(report)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
