"""`zqnode status`: the whole cluster on one screen, refreshed every few seconds.

    zqnode status                   chain epoch, sectors by state, workers and what they
                                    run, jobs, the next deadlines and how the last ended
    zqnode status --every 5         refresh every 5 s (Ctrl-C stops)
    zqnode status --once --json     one JSON object (see `gather`)

It asks the chain, the manager (its sector state machine and call tracker), the
scheduler, the poster and the hub (the problems nodes report: a full disk, ...), all at once; a role that does not answer shows under
`errors` and the rest is still shown."""
from __future__ import annotations

import sys
import time

import click
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.peer import CallTimeout, Peer
from zqnode.bus.protocol import HUB, ListNodes
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.cli.common import age_text, bus_option, json_option, size_text, to_json, with_client
from zqnode.nodes.wire.manager import MgrJobs
from zqnode.nodes.wire import poster as PW
from zqnode.nodes.wire.scheduler import SchedGetDiag
from zqnode.nodes.sealing import states as S
from zqnode.nodes.wire import sealing as SW

NEXT_DEADLINES = 3          # deadlines with sectors shown per miner
ACTIVE_JOBS = ("queued", "assigned", "preparing", "prepared", "running", "ret-wait")


async def gather(peer: Peer, *, timeout: float = 5.0) -> dict:
    """One snapshot of the cluster as plain data (what --json prints): `chain`,
    `sectors`, `workers`, `jobs`, `deadlines`; a part whose node did not answer is None
    and its reason is in `errors`."""
    raw: dict = {}
    errors: dict[str, str] = {}

    async def ask(part: str, fn) -> None:
        try:
            raw[part] = await fn()
        except (RemoteError, CallTimeout) as e:
            errors[part] = str(e)

    async def deadlines():
        info = await peer.call("@poster", PW.PosterGetInfo(), timeout=timeout)
        rows = {}
        for m in info.miners:
            rows[m.actor_id] = await peer.call("@poster", PW.PosterListDeadlines(miner=m.actor_id),
                                               timeout=timeout)
        return info, rows

    chain = BusChainAPI(peer, timeout=timeout)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "chain", chain.info)
        nursery.start_soon(ask, "sectors", lambda: peer.call("@manager", SW.SealingList(),
                                                             timeout=timeout))
        nursery.start_soon(ask, "jobs", lambda: peer.call("@manager", MgrJobs(), timeout=timeout))
        nursery.start_soon(ask, "workers", lambda: peer.call("@scheduler", SchedGetDiag(),
                                                             timeout=timeout))
        nursery.start_soon(ask, "deadlines", deadlines)
        nursery.start_soon(ask, "nodes", lambda: peer.call(HUB, ListNodes(), timeout=timeout))
    return {"time": round(time.time(), 3), "chain": _chain(raw.get("chain")),
            "sectors": _sectors(raw.get("sectors")), "workers": _workers(raw.get("workers"),
                                                                          raw.get("jobs")),
            "jobs": _jobs(raw.get("jobs")), "deadlines": _deadlines(raw.get("deadlines")),
            "problems": _problems(raw.get("nodes")), "errors": errors}


def _problems(listing) -> dict | None:
    """What each node reports for an operator (a full disk, a chain that went back)."""
    if listing is None:
        return None
    return {n.node_id: dict(n.capabilities.get("problems") or {}) for n in listing.nodes
            if isinstance(n.capabilities, dict) and n.capabilities.get("problems")}


def _chain(info) -> dict | None:
    if info is None:
        return None
    return {"epoch": info.head.epoch, "network": info.network, "epoch_seconds": info.epoch_seconds,
            "pool": info.pool, "reorgs": info.fork, "miners": list(info.miners)}


def _sectors(listing) -> dict | None:
    if listing is None:
        return None
    by_state: dict[str, int] = {}
    for s in listing.sectors:
        by_state[s.state] = by_state.get(s.state, 0) + 1
    order = {st: i for i, st in enumerate(S.ALL)}
    return {"total": len(listing.sectors),
            "by_state": dict(sorted(by_state.items(), key=lambda kv: order.get(kv[0], 999))),
            "paused": [s.number for s in listing.sectors if s.paused],
            "errors": {str(s.number): s.last_error for s in listing.sectors
                       if s.last_error and s.state not in (S.PROVING, S.REMOVED)},
            "head": listing.head}


def _job_of(jobs) -> dict:
    return {j.work_id: j for j in jobs.jobs} if jobs is not None else {}


def _workers(reply, jobs) -> list | None:
    if reply is None:
        return None
    known = _job_of(jobs)
    out = []
    for w in reply.diag.workers:
        r = w.resources
        running = []
        for request, state in w.running:
            j = known.get(request)
            running.append({"job": request[:12], "state": state, "task": j.task if j else "",
                            "sector": f"s-{j.sector.miner}-{j.sector.number}" if j else ""})
        out.append({"name": w.worker, "hostname": w.hostname, "enabled": w.enabled,
                    "tasks": list(w.tasks), "running": running,
                    "cpus": r.cpus, "cpus_reserved": w.active.cpu_use,
                    "memory": r.mem_physical, "memory_used": r.mem_used,
                    "memory_reserved": w.active.mem_used_min,
                    "gpus": len(r.gpus), "gpus_reserved": w.active.gpu_used,
                    "utilization": round(w.utilization, 4)})
    return out


def _jobs(reply) -> dict | None:
    if reply is None:
        return None
    by_status: dict[str, int] = {}
    for j in reply.jobs:
        by_status[j.status] = by_status.get(j.status, 0) + 1
    active = [{"job": j.work_id[:12], "task": j.task, "sector": f"s-{j.sector.miner}-{j.sector.number}",
               "status": j.status, "worker": j.worker, "age_s": j.age_s, "error": j.error}
              for j in reply.jobs if j.status in ACTIVE_JOBS or j.state == "failed"]
    return {"total": len(reply.jobs), "by_status": by_status, "active": active}


def _deadlines(got) -> list | None:
    if got is None:
        return None
    info, rows = got
    out = []
    for m in info.miners:
        listing = rows[m.actor_id]
        cur = listing.current
        upcoming = sorted((d for d in listing.deadlines if d.sectors), key=lambda d: d.open)
        out.append({
            "miner": f"f0{m.actor_id}", "current": {"index": cur.index, "open": cur.open,
                                                    "close": cur.close, "epoch": cur.current_epoch},
            "proven": m.proven, "missed": m.missed, "unconfirmed": m.unconfirmed, "empty": m.empty,
            "runners": [{"id": r.id, "index": r.index, "state": r.state} for r in m.runners],
            "next": [{"index": d.index, "open": d.open, "close": d.close, "partitions": d.partitions,
                      "sectors": d.sectors, "faults": d.faults, "runner": d.runner, "last": d.last}
                     for d in upcoming[:NEXT_DEADLINES]]})
    return out


# -- text -------------------------------------------------------------------------------------
def render(snap: dict) -> str:
    """The snapshot as the lines `zqnode status` shows."""
    lines = [f"zqnode status at {time.strftime('%H:%M:%S', time.localtime(snap['time']))}"]
    for node, problems in (snap.get("problems") or {}).items():
        for key, text in problems.items():
            lines.append(f"PROBLEM   {node}: {key}: {text}")
    c = snap["chain"]
    if c is not None:
        lines.append(f"chain     epoch {c['epoch']} ({c['network']}, {c['epoch_seconds']:g} s epochs, "
                     f"pool {c['pool']}, reorgs {c['reorgs']})")
    s = snap["sectors"]
    if s is not None:
        states = ", ".join(f"{k} {v}" for k, v in s["by_state"].items()) or "none"
        lines.append(f"sectors   {s['total']}: {states}"
                     + (f" | paused {','.join(map(str, s['paused']))}" if s["paused"] else ""))
        for number, error in list(s["errors"].items())[:3]:
            lines.append(f"          sector {number}: {error}")
    ws = snap["workers"]
    if ws is not None:
        lines.append(f"workers   {len(ws)}" + ("" if ws else " (none registered with the scheduler)"))
        for w in ws:
            lines.append(f"  {w['name']:<18} {'enabled' if w['enabled'] else 'DISABLED':<8} "
                         f"cpu {w['cpus_reserved']}/{w['cpus']}  mem {size_text(w['memory_used'])} used, "
                         f"{size_text(w['memory_reserved'])} reserved of {size_text(w['memory'])}  "
                         f"gpu {w['gpus_reserved']:g}/{w['gpus']}")
            for t in w["running"]:
                lines.append(f"    {t['task'] or '?':<4} {t['sector'] or t['job']:<14} {t['state']}")
    j = snap["jobs"]
    if j is not None:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(j["by_status"].items())) or "none"
        lines.append(f"jobs      {counts}")
        for job in j["active"][:8]:
            lines.append(f"  {job['job']}  {job['task']:<4} {job['sector']:<14} {job['status']:<9} "
                         f"{job['worker'] or '-':<18} {age_text(job['age_s'])}"
                         + (f"  {job['error']}" if job["error"] else ""))
        if len(j["active"]) > 8:
            lines.append(f"  ... {len(j['active']) - 8} more (zqnode sealing jobs)")
    for d in snap["deadlines"] or []:
        cur = d["current"]
        lines.append(f"proving   {d['miner']}: deadline {cur['index']} [{cur['open']},{cur['close']}); "
                     f"last deadlines {d['proven']} proven, {d['missed']} missed, "
                     f"{d['unconfirmed']} unconfirmed")
        for n in d["next"]:
            lines.append(f"  dl {n['index']:<3} [{n['open']},{n['close']}) {n['partitions']} partitions, "
                         f"{n['sectors']} sectors, {n['faults']} faulty"
                         + (f", runner {n['runner']}" if n["runner"] else "")
                         + f", last: {n['last'] or '-'}")
        if not d["next"]:
            lines.append("  no deadline has sectors yet")
    for part, error in snap["errors"].items():
        lines.append(f"({part}: {error})")
    return "\n".join(lines)


@click.command("status")
@bus_option
@click.option("--every", default=2.0, show_default=True, type=click.FloatRange(min=0.2),
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Show it once and exit.")
@json_option
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each node.")
def status(bus: str, every: float, once: bool, as_json: bool, timeout: float) -> None:
    """The cluster at a glance: chain, sectors, workers, jobs, deadlines (live)."""
    clear = not once and not as_json and sys.stdout.isatty()

    def show(snap: dict) -> None:
        if as_json:
            click.echo(to_json(snap))
            return
        text = render(snap)
        if clear:
            text = "\x1b[H\x1b[2J" + text + f"\n\n(every {every:g} s; Ctrl-C stops)"
        elif not once:
            text += "\n"
        click.echo(text)

    async def run(peer: Peer) -> None:
        while True:
            show(await gather(peer, timeout=timeout))
            if once:
                return
            await trio.sleep(every)

    with_client(bus, run, timeout=timeout)


COMMANDS = [status]
