"""Plan a cluster: simulate days of sealing and proving on it in seconds.

    python tools/simulate.py --workers 100 --sectors 10000 --days 1 --seed 1 --json
    python tools/simulate.py --cluster my.toml --profile tools/profiles/32GiB.toml --png day.png
    python tools/simulate.py --workers 20 --sectors 2000 --chaos --seed 7

Runs the real node cores (nodes.scheduler.core.Scheduler, the manager's call tracker
nodes.manager.tracker.Tracker, the sector state machine nodes.sealing.core.SealingCore,
the poster nodes.poster.core.PosterCore, the worker's calls nodes.worker.core.WorkerCore,
and the chain's policy and miner actor methods) behind thin simulated shells (tools/sim/):
a simulated bus (latency; with --chaos, slow and lost messages and nodes that go down),
workers that hold each task for the profile's duration instead of proving, and results
the chain's fake verifiers accept.

Deviation from "MockClock + in-memory bus": the shells run on tools/sim/loop.py, a
discrete-event loop, not trio. Trio runs each batch of ready tasks in a shuffled order,
so a MockClock run is not a function of its seed, and a task per timer would not reach
the scale target (a day of 100 workers and 10,000 sectors in well under a minute).

Sealing load: `--seal N` pledges N committed-capacity sectors in all; by default the
pledger keeps every PC1 slot of the cluster busy for the whole run (a new sector
whenever fewer sectors than PC1 slots wait for or run PC1), which measures what the
cluster can seal. `--sectors N` are sectors already proving at the start (placed in
deadlines by the miner actor's own assignment); their WindowPoSt runs as WDP tasks.

Prints a table, or one JSON object with --json: sectors sealed (and per day, overall and
over the run's second half), per-worker and per-resource utilisation, queue wait per
task type (from the request to the task's start, a fetch included), deadline outcomes
(proven; late = proven with less than a quarter of the window left; missed), the sectors
proving on chain at the end (and at the start), failures. --png draws the timeline.
`wall_seconds` and `cpu_seconds` are the only values that differ between two runs with
the same arguments. Progress goes to stderr (at most a line every 2 s).
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
for path in (str(HERE.parent), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import click
from sim.cluster import Chaos, Simulation
from sim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_PROFILE,
    SimConfigError,
    load_cluster,
    load_profile,
)
from sim.png import write_png
from sim.report import deadline_marks, gas_cost, table, title

from zqnode.nodes.chain.policy import policy as policy_named


def simulate(*, cluster=DEFAULT_CLUSTER, profile=DEFAULT_PROFILE, workers: int | None = None,
             sectors: int = 1000, seal: int | None = None, days: float = 1.0, policy: str = "mainnet",
             seed: int = 0, chaos: bool = False, batching: bool = False, png: str | None = None,
             base_fee: int = 100, progress=None) -> dict:
    """Run one simulation; the summary dict (and the PNG written when `png` names a file)."""
    c = load_cluster(cluster)
    if workers is not None:
        c = c.scaled(workers)
    sim = Simulation(c, load_profile(profile), policy_named(policy), sectors=sectors, seal=seal,
                     days=days, seed=seed, chaos=Chaos() if chaos else None, batching=batching,
                     progress=progress)
    summary = sim.run()
    summary["gas"].update(gas_cost(summary["gas"], base_fee))
    if png:
        width, height = write_png(png, sim.metrics.spans, sim.workers, sim.end,
                                  posts=deadline_marks(sim), title=title(sim))
        summary["png"] = {"path": str(png), "width": width, "height": height}
    return summary


class _Progress:
    """A line on stderr at most every 2 s of wall time (short runs stay quiet)."""

    def __init__(self):
        self.last = time.perf_counter()

    def __call__(self, text: str) -> None:
        now = time.perf_counter()
        if now - self.last >= 2.0:
            self.last = now
            click.echo(text, err=True)


@click.command(help=__doc__.split("\n\n")[0])
@click.option("--cluster", type=click.Path(dir_okay=False), default=str(DEFAULT_CLUSTER), show_default=True,
              help="cluster TOML: [[group]]s of workers")
@click.option("--profile", type=click.Path(dir_okay=False), default=str(DEFAULT_PROFILE), show_default=True,
              help="task durations TOML for one sector size")
@click.option("--workers", type=int, default=None, help="scale the cluster's mix to N workers")
@click.option("--sectors", type=click.IntRange(min=0), default=1000, show_default=True,
              help="sectors already proving at the start")
@click.option("--seal", type=click.IntRange(min=0), default=None,
              help="CC sectors to pledge in all [default: keep every PC1 slot busy]")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--policy", type=click.Choice(["mainnet", "devnet"]), default="mainnet", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--chaos", is_flag=True, help="worker crashes, manager restarts, slow/lost messages, reorgs")
@click.option("--batching", is_flag=True, help="PreCommit batching and commit aggregation (Lotus's defaults)")
@click.option("--base-fee", type=click.IntRange(min=0), default=100, show_default=True,
              help="attoFIL per gas unit the gas is priced at (100 is the network's minimum)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="write the timeline PNG here")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def main(cluster, profile, workers, sectors, seal, days, policy, seed, chaos, batching, base_fee, as_json, png,
         quiet):
    try:
        summary = simulate(cluster=cluster, profile=profile, workers=workers, sectors=sectors, seal=seal,
                           days=days, policy=policy, seed=seed, chaos=chaos, batching=batching, png=png,
                           base_fee=base_fee, progress=None if quiet else _Progress())
    except SimConfigError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(table(summary))
        if png:
            click.echo(f"timeline: {png}")


if __name__ == "__main__":
    main()
