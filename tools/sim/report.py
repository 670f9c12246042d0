"""The summary of a simulation (a JSON-ready dict) and its table for people."""
from __future__ import annotations

from collections import Counter

from zqnode.nodes.sealing import states as S

LATE_SHARE = 0.25        # a proof landing in the last quarter of its window is 'late'


def summarise(sim) -> dict:
    m, days = sim.metrics, sim.days
    per_worker, per_resource = m.utilisation(sim.workers, 0.0, sim.end)
    states = Counter(s.state for s in sim.sealing.core.sectors.values())
    sealed = len(m.sealed)
    dl = Counter()
    for d in m.deadlines:
        dl[d["status"]] += 1
        dl["late"] += _mark(sim, d) == "late"
    chain_miner = sim.chain.miner(sim.sealing.core.miner)
    faulty = sum(len(p.faults) for d in chain_miner.deadlines for p in d.partitions)
    busy = {}
    for s in m.spans:
        end = sim.end if s.end < 0 else min(s.end, sim.end)
        busy[s.task] = busy.get(s.task, 0.0) + max(end - s.start, 0.0)
    return {
        "days": days, "seed": sim.seed, "policy": sim.policy.name, "chaos": sim.chaos is not None,
        "cluster": sim.cluster.name, "profile": sim.profile.name,
        "workers": len(sim.workers), "groups": {g.name: g.count for g in sim.cluster.groups},
        "pc1_slots": sim.pc1_slots,
        "epochs": sim.chain.head.epoch - sim.start_epoch,
        "proving_sectors": len(chain_miner.sectors),           # on chain at the end
        "proving_sectors_at_start": sim.proving_sectors,
        "sectors_pledged": m.pledged,
        "sectors_sealed": sealed,
        "sectors_sealed_per_day": round(sealed / days, 1),
        # the rate over the second half of the run, once the pipeline is full
        "sectors_sealed_per_day_steady": round(
            sum(1 for t in m.sealed.values() if t >= sim.end / 2) / (days / 2), 1),
        "sectors_in_progress": {k or "New": v for k, v in sorted(states.items()) if k != S.PROVING},
        "sectors_paused": sum(1 for s in sim.sealing.core.sectors.values() if s.paused),
        "sealing_messages": _sealing_messages(sim, sealed),
        "gas": _gas(sim, sealed),
        "funds": _funds(chain_miner),
        "deadlines_proven": dl["proven"],
        "deadlines_late": dl["late"],
        "deadlines_missed": dl["missed"],
        "deadlines_unconfirmed": dl["unconfirmed"],
        "deadlines_empty": dl["empty"],
        "faulty_sectors_on_chain": faulty,
        "utilisation": {"resources": per_resource, "workers": per_worker},
        "task_hours": {t: round(v / 3600, 1) for t, v in sorted(busy.items())},
        "task_runs": dict(sorted(m.runs.items())),
        "queue_wait": m.queue_waits(),
        "failures": {
            "tasks_killed": m.killed,
            "worker_crashes": sum(w.crashes for w in sim.workers.values()),
            "manager_restarts": sim.manager.restarts,
            "reorgs": sim.reorgs,
            "messages_sent": sim.net.sent, "messages_delayed": sim.net.delayed,
            "messages_lost": sim.net.lost,
            "results_duplicate": sim.manager.outcomes["duplicate"],
            "scheduler_lost_runs": sim.scheduler.lost_runs, "scheduler_adopted": sim.scheduler.adopted,
            "requests_run_twice": len(sim.scheduler.run_twice),
        },
        "errors": list(dict.fromkeys(sim.sealing.errors + sim.poster.errors + sim.scheduler.errors))[:20],
        "sim_events": sim.loop.calls,
    }


def _sealing_messages(sim, sealed: int) -> dict:
    """PreCommit and ProveCommit messages pushed (batched or one per sector), and their
    sum per sector sealed."""
    sent = sim.sealing.methods
    pre = sent.get("PreCommitSector", 0) + sent.get("PreCommitSectorBatch2", 0)
    prove = sent.get("ProveCommitSector", 0) + sent.get("ProveCommitSectors3", 0)
    return {"precommit": pre, "provecommit": prove,
            "per_sealed_sector": round((pre + prove) / sealed, 3) if sealed else 0.0}


SEALING_METHODS = ("PreCommitSector", "PreCommitSectorBatch2", "ProveCommitSector", "ProveCommitSectors3")


def _gas(sim, sealed: int) -> dict:
    """Gas the run's messages used (nodes.chain.funds' schedule): sealing's, and the rest
    (WindowPoSt, declarations); per sector sealed, and per day. simulate() prices it."""
    used = {"sealing": 0, "proving": 0}
    for ts in sim.chain.tipsets[sim.start_epoch + 1:]:
        for m, r in zip(ts.messages, ts.receipts):
            used["sealing" if m.method in SEALING_METHODS else "proving"] += r.gas_used
    return {**used, "sealing_per_sealed_sector": round(used["sealing"] / sealed) if sealed else 0,
            "per_day": round((used["sealing"] + used["proving"]) / sim.days)}


def gas_cost(gas: dict, base_fee: int) -> dict:
    """FIL a day of the run's gas costs at `base_fee` attoFIL per gas unit."""
    return {"base_fee_attofil": base_fee, "fil_per_day": gas["per_day"] * base_fee / 10 ** 18,
            "fil_per_sealed_sector": gas["sealing_per_sealed_sector"] * base_fee / 10 ** 18}


def _funds(m) -> dict:
    """What the miner holds locked at the end (nanoFIL), and what it paid in fees."""
    return {"initial_pledge": m.initial_pledge, "precommit_deposits": m.precommit_deposits,
            "vesting": m.locked_funds, "fee_debt": m.fee_debt, "burnt": m.burnt}


def _mark(sim, d: dict) -> str:
    """A deadline's outcome as the timeline marks it: proven, late (proven with less than
    LATE_SHARE of the window left), missed, unconfirmed, empty, unknown."""
    window = sim.policy.challenge_window
    if d["status"] == "proven" and d["last_landing"] >= d["close"] - window * LATE_SHARE:
        return "late"
    return d["status"]


def deadline_marks(sim) -> list[tuple[float, str]]:
    """(seconds into the run, mark) of every deadline closed."""
    return [((d["close"] - sim.start_epoch) * sim.policy.epoch_seconds, _mark(sim, d))
            for d in sim.metrics.deadlines]


def title(sim) -> str:
    return (f"{sim.cluster.name}: {len(sim.workers)} workers, {sim.days:g} days, "
            f"{sim.policy.name} policy, seed {sim.seed}{', chaos' if sim.chaos else ''}")


def table(s: dict) -> str:
    """The summary as text: totals, deadlines, waits and utilisation by worker group."""
    r = s["utilisation"]["resources"]
    pct = lambda x: "-" if x is None else f"{100 * x:5.1f}%"
    groups = ", ".join(f"{k} {v}" for k, v in s["groups"].items())
    progress = ", ".join(f"{k} {v}" for k, v in s["sectors_in_progress"].items()) or "none"
    lines = [
        (f"{s['workers']} workers ({groups}), {s['days']:g} day(s), {s['policy']} policy, "
         f"seed {s['seed']}{', chaos' if s['chaos'] else ''}"),
        (f"sealed        {s['sectors_sealed']} sectors ({s['sectors_sealed_per_day']}/day, "
         f"{s['sectors_sealed_per_day_steady']}/day in the second half) of {s['sectors_pledged']} "
         f"pledged; PC1 slots {s['pc1_slots']}"),
        f"in progress   {progress}",
        (f"deadlines     proven {s['deadlines_proven']} (late {s['deadlines_late']}), missed "
         f"{s['deadlines_missed']}, unconfirmed {s['deadlines_unconfirmed']}, "
         f"empty {s['deadlines_empty']}"),
        (f"proving       {s['proving_sectors']} sectors on chain at the end "
         f"({s['proving_sectors_at_start']} at the start)"),
        (f"messages      {s['sealing_messages']['precommit']} PreCommit, "
         f"{s['sealing_messages']['provecommit']} ProveCommit "
         f"({s['sealing_messages']['per_sealed_sector']} per sector sealed)"),
        (f"gas           {s['gas']['per_day'] / 1e9:.2f} G a day"
         + (f", {s['gas']['fil_per_day']:.6g} FIL a day at a base fee of "
            f"{s['gas']['base_fee_attofil']} attoFIL" if "fil_per_day" in s["gas"] else "")),
        f"utilisation   cpu {pct(r['cpu'])}  ram {pct(r['ram'])}  gpu {pct(r['gpu'])}",
        "",
        f"{'task':6} {'runs':>6} {'hours':>8} {'waits':>6} {'mean wait':>10} {'p50':>8} {'max':>8}",
    ]
    for task in sorted(set(s["task_runs"]) | set(s["queue_wait"])):
        w = s["queue_wait"].get(task, {})
        lines.append(f"{task:6} {s['task_runs'].get(task, 0):6} {s['task_hours'].get(task, 0):8.1f} "
                     f"{w.get('count', 0):6} {_dur(w.get('mean_s')):>10} {_dur(w.get('p50_s')):>8} "
                     f"{_dur(w.get('max_s')):>8}")
    lines += ["", f"{'group':10} {'workers':>7} {'cpu':>7} {'ram':>7} {'gpu':>7}"]
    workers = s["utilisation"]["workers"]
    for g in s["groups"]:
        mine = [u for name, u in workers.items() if name.rsplit("-", 1)[0] == g]
        cpu, ram, gpu = (_mean(mine, k) for k in ("cpu", "ram", "gpu"))
        lines.append(f"{g:10} {len(mine):7} {pct(cpu):>7} {pct(ram):>7} {pct(gpu):>7}")
    f = s["failures"]
    if s["chaos"]:
        lines += ["", (f"chaos         {f['worker_crashes']} worker crashes ({f['tasks_killed']} tasks "
                       f"killed), {f['manager_restarts']} manager restarts, {f['reorgs']} reorgs, "
                       f"{f['messages_lost']} lost / {f['messages_delayed']} slow of "
                       f"{f['messages_sent']} messages")]
    if s["errors"]:
        lines += ["", "errors:"] + [f"  {e}" for e in s["errors"]]
    lines.append(f"\n{s['wall_seconds']} s wall, {s['sim_events']} events")
    return "\n".join(lines)


def _mean(rows: list[dict], key: str) -> float | None:
    if not rows or rows[0][key] is None:
        return None
    return sum(u[key] for u in rows) / len(rows)


def _dur(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
