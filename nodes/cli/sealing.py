"""`zqnode sealing ...`: the cluster's work as an operator sees it.

    zqnode sealing jobs [--json]          work the manager tracks, and where it is
    zqnode sealing workers [--json]       workers: tasks, CPU/RAM/GPU use
    zqnode sealing sched-diag [--json]    the scheduler's queue, windows and workers
    zqnode sealing abort JOB              abort work (a work id or a unique prefix)
    zqnode sealing run-pipeline --sectors 1,2 [--miner 1000] [--seal-proof ...]
                                          seal sectors AP -> PC1 -> PC2 -> C1 (a test and
                                          demo driver, not the sector state machine)
"""
from __future__ import annotations

import time
from pathlib import Path

import click
import trio

from zqnode.bus.peer import Peer
from zqnode.nodes.cli.common import (MinerId, age_text, bus_option, emit_json, json_option, plain, to_json,
                                     with_client)
from zqnode.nodes.wire.manager import MgrAbort, MgrJobs
from zqnode.nodes.wire.scheduler import SchedGetDiag


@click.group("sealing")
def sealing_group() -> None:
    """The sealing cluster: jobs, workers, the scheduler's view, aborts."""


@sealing_group.command("jobs")
@bus_option
@json_option
def jobs(bus: str, as_json: bool) -> None:
    """Work the manager tracks: queued, assigned, preparing, prepared, running,
    ret-wait (its worker finished; the result is on its way), returned (waiting for
    its requester), failed, aborted."""
    listing = with_client(bus, lambda peer: peer.call("@manager", MgrJobs()))
    if as_json:
        emit_json(listing.jobs)
        return
    if not listing.scheduler:
        click.echo("(the scheduler did not answer: no assigned/prepared detail)", err=True)
    click.echo(f"{'ID':<12}  {'SECTOR':<12} {'TASK':<5} {'STATUS':<10} {'WORKER':<16} {'AGE':>7}")
    for j in listing.jobs:
        line = (f"{j.work_id[:12]:<12}  s-{j.sector.miner}-{j.sector.number:<8} {j.task:<5} "
                f"{j.status:<10} {j.worker or '-':<16} {age_text(j.age_s):>7}")
        click.echo(line + (f"  {j.error}" if j.error else ""))


def _diag(bus: str):
    return with_client(bus, lambda peer: peer.call("@scheduler", SchedGetDiag()))


@sealing_group.command("workers")
@bus_option
@json_option
def workers(bus: str, as_json: bool) -> None:
    """Workers as the scheduler sees them: tasks, and CPU, RAM and GPU in use."""
    diag = _diag(bus).diag
    rows = []
    for w in diag.workers:
        r = w.resources
        rows.append({"worker": w.worker, "hostname": w.hostname, "enabled": w.enabled,
                     "tasks": list(w.tasks), "cpus": r.cpus, "cpus_used": w.active.cpu_use,
                     "mem_physical": r.mem_physical, "mem_used": r.mem_used,
                     "mem_reserved": w.active.mem_used_min, "gpus": list(r.gpus),
                     "gpus_used": w.active.gpu_used, "utilization": round(w.utilization, 4),
                     "running": dict(w.running), "task_counts": w.task_counts})
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['worker']} ({row['hostname']}, {state}): {' '.join(row['tasks'])}")
        click.echo(f"  CPU {row['cpus_used']}/{row['cpus']}  RAM used {row['mem_used'] / 2**30:.1f} "
                   f"of {row['mem_physical'] / 2**30:.1f} GiB, tasks reserve "
                   f"{row['mem_reserved'] / 2**30:.1f} GiB  GPU {row['gpus_used']:g}/{len(row['gpus'])}"
                   f"  utilization {row['utilization']:.0%}")
        for rid, state in row["running"].items():
            click.echo(f"  {rid[:12]} {state}")


@sealing_group.command("sched-diag")
@bus_option
@json_option
def sched_diag(bus: str, as_json: bool) -> None:
    """The scheduler's state: queued requests in order, open windows, every worker's
    windows, preparing/active use and running requests."""
    reply = _diag(bus)
    record = {**plain(reply.diag), "parked": reply.parked}
    if as_json:
        emit_json(record)
        return
    click.echo(f"queued requests: {len(record['requests'])}, open windows: "
               f"{len(record['open_windows'])}, parked: {len(record['parked'])}")
    for r in record["requests"]:
        click.echo(f"  {r['request'][:12]} {r['task']} s-{r['sector']['miner']}-{r['sector']['number']}"
                   f" priority {r['priority']}")
    for w in record["workers"]:
        click.echo(f"{w['worker']}: {'enabled' if w['enabled'] else 'disabled'}, "
                   f"{len(w['windows'])} filled windows, running {len(w['running'])}")


@sealing_group.command("abort")
@click.argument("job")
@bus_option
@json_option
def abort(job: str, bus: str, as_json: bool) -> None:
    """Abort queued or running work: JOB is its work id or a unique prefix of it. A
    running task's process is killed; its requester hears that it was aborted."""
    reply = with_client(bus, lambda peer: peer.call("@manager", MgrAbort(job=job)))
    if as_json:
        emit_json(reply)
        return
    click.echo(f"aborted {reply.work_id}")


@sealing_group.command("run-pipeline")
@click.option("--sectors", required=True, help="Sector numbers, comma-separated.")
@click.option("--miner", default=1000, show_default=True, type=MinerId())
@click.option("--seal-proof", default="StackedDrg2KiBV1_1", show_default=True)
@click.option("--hold-dir", type=click.Path(file_okay=False), default=None,
              help="Before consuming a TASK result, wait while DIR/hold-consume-TASK exists.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds for the whole run.")
@bus_option
def run_pipeline(sectors: str, miner: int, seal_proof: str, hold_dir: str | None, timeout: float,
                 bus: str) -> None:
    """Seal sectors AP -> PC1 -> PC2 -> C1 through the manager, concurrently; prints
    progress, then one JSON line per sector (comm_d, comm_r, ticket, seed, proof)."""
    from zqnode.nodes.manager.api import BusRequester
    from zqnode.nodes.manager.pipeline import seal_sector
    from zqnode.proofs.params import ProofParamsError, seal_proof as lookup
    try:
        numbers = [int(n) for n in sectors.split(",") if n.strip()]
        lookup(seal_proof)
    except (ValueError, ProofParamsError) as e:
        raise click.ClickException(f"bad --sectors or --seal-proof: {e}") from None

    def say(line: str) -> None:
        click.echo(line)

    async def hold(task: str, sector, wid: str) -> bool:
        if hold_dir is None or not (Path(hold_dir) / f"hold-consume-{task}").exists():
            return False
        say(f"holding {task} s-{sector.miner}-{sector.number} {wid}")
        while (Path(hold_dir) / f"hold-consume-{task}").exists():
            await trio.sleep(0.1)
        return True

    async def go(peer: Peer) -> list[dict]:
        req = BusRequester(peer, patience_s=timeout)
        results: dict[int, dict] = {}

        async def one(number: int) -> None:
            results[number] = await seal_sector(req, miner, number, seal_proof, hold=hold, log=say)
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                for number in numbers:
                    nursery.start_soon(one, number)
        return [results[n] for n in numbers]

    started = time.monotonic()
    for record in with_client(bus, go, timeout=10.0):
        click.echo(to_json(record))
    say(f"sealed {len(numbers)} sectors in {time.monotonic() - started:.1f}s")


COMMANDS = [sealing_group]
