"""`zqnode proving ...`: what the poster proves, when, and what failed (as `lotus-miner
proving`). Every command asks the poster node ("@poster" by default) and takes --json;
deadlines, deadline and faults with --lotus URL read a miner's chain state from a Lotus
node instead, for a miner no poster of ours proves."""
from __future__ import annotations

import click

from zqnode.nodes.cli.chain import ids
from zqnode.nodes.cli.common import bus_option, emit_json, json_option, miner_option, with_client
from zqnode.nodes.cli.lotus import from_lotus, lotus_options
from zqnode.nodes.poster import views
from zqnode.nodes.wire import poster as W

miner_option = miner_option("The miner [default: the poster's only miner].")
poster_option = click.option("--poster", "target", default="@poster", show_default=True,
                             help="The poster node (a node id or @poster).")


def ask(bus: str, target: str, msg, timeout: float = 10.0):
    return with_client(bus, lambda peer: peer.call(target, msg, timeout=timeout), timeout=timeout)


@click.group("proving")
def proving_group() -> None:
    """WindowPoSt: deadlines, faults, sector checks, the poster's runners."""


@proving_group.command("info")
@bus_option
@poster_option
@json_option
def info(bus: str, target: str, as_json: bool) -> None:
    """The poster, its miners, current deadlines and running runners."""
    r = ask(bus, target, W.PosterGetInfo())
    if as_json:
        emit_json(r)
        return
    click.echo(f"poster {r.node} on {r.network}, head {r.head}, prover {r.prover}")
    for m in r.miners:
        d = m.current
        click.echo(f"miner f0{m.actor_id} (posts from {m.sender}): deadline {d.index} open [{d.open}, {d.close}) "
                   f"challenge {d.challenge} fault cutoff {d.fault_cutoff}")
        click.echo(f"  last deadlines: {m.proven} proven, {m.missed} missed, {m.unconfirmed} "
                   f"unconfirmed, {m.empty} empty")
        for run in m.runners:
            click.echo(f"  runner {run.id}: {run.state}, {_batches(run)}"
                       + (f", skipped {ids(s.number for s in run.skipped)}" if run.skipped else ""))


def _batches(run: W.RunnerView) -> str:
    if not run.batches:
        return "no batches"
    return "; ".join(f"batch {b.index} [{ids(b.partitions)}] {b.state}"
                     + (f" {b.msg_id[:16]}" if b.msg_id else "") for b in run.batches)


@proving_group.command("deadlines")
@miner_option
@bus_option
@poster_option
@lotus_options
@json_option
def deadlines(miner: int, bus: str, target: str, lotus: str, lotus_token: str, as_json: bool) -> None:
    """Every deadline of the proving period: partitions, sectors, faults, how it went."""
    if lotus:
        r = from_lotus(lotus, lotus_token, miner, lambda chain: views.deadlines(chain, chain.policy, miner))
    else:
        r = ask(bus, target, W.PosterListDeadlines(miner=miner))
    if as_json:
        emit_json(r)
        return
    click.echo(f"miner f0{r.miner}, current deadline {r.current.index} (epoch {r.current.current_epoch})")
    click.echo(f"{'DL':>3} {'OPEN':>8} {'CLOSE':>8} {'PARTS':>5} {'SECTORS':>7} {'FAULTS':>6} "
               f"{'RECOVER':>7} {'POSTED':<8} {'RUNNER':<9} LAST")
    for d in r.deadlines:
        mark = "*" if d.index == r.current.index else " "
        click.echo(f"{d.index:>3}{mark}{d.open:>7} {d.close:>8} {d.partitions:>5} {d.sectors:>7} "
                   f"{d.faults:>6} {d.recoveries:>7} {ids(d.posted):<8} {d.runner or '-':<9} {d.last or '-'}")


@proving_group.command("deadline")
@click.argument("index", type=int)
@miner_option
@bus_option
@poster_option
@lotus_options
@json_option
def deadline(index: int, miner: int, bus: str, target: str, lotus: str, lotus_token: str, as_json: bool) -> None:
    """Deadline INDEX: its window, partitions on chain, its runner and past outcomes."""
    async def on_chain(chain) -> W.PosterDeadline:
        view = await chain.partitions(miner, index)          # first: an index out of range fails
        when = views.window(chain.policy, await chain.deadline(miner), index)
        return W.PosterDeadline(miner=miner, info=when, chain=view, runner=None, outcomes=[], messages=[])
    if lotus:
        r = from_lotus(lotus, lotus_token, miner, on_chain)
    else:
        r = ask(bus, target, W.PosterGetDeadline(index=index, miner=miner))
    if as_json:
        emit_json(r)
        return
    i = r.info
    click.echo(f"deadline {r.chain.index} of f0{r.miner}: open [{i.open}, {i.close}) challenge {i.challenge} "
               f"fault cutoff {i.fault_cutoff} (epoch {i.current_epoch})")
    for p in r.chain.partitions:
        posted = "posted" if p.index in r.chain.posted else "not posted"
        click.echo(f"  partition {p.index} ({posted}): sectors {ids(p.sectors)}  faults {ids(p.faults)}  "
                   f"recoveries {ids(p.recoveries)}  unproven {ids(p.unproven)}")
    if not r.chain.partitions:
        click.echo("  no partitions")
    if r.runner is not None:
        run = r.runner
        rand = run.randomness.hex()[:16] or "-"
        click.echo(f"runner {run.id}: {run.state}, randomness {rand}, {_batches(run)}")
        for s in run.skipped:
            click.echo(f"  skipped sector {s.number}: {s.reason}")
        for note in run.notes:
            click.echo(f"  {note}")
    for m in r.messages:
        click.echo(f"message {m.msg_id[:16]} {m.kind} batch {m.batch} nonce {m.nonce}: {m.status}"
                   + (f" ({m.reason})" if m.reason else ""))
    for o in r.outcomes:
        click.echo(f"window [{o.open}, {o.close}): {o.status}, partitions needed {ids(o.needed)} "
                   f"landed {ids(o.landed)}")


@proving_group.command("faults")
@miner_option
@bus_option
@poster_option
@lotus_options
@json_option
def faults(miner: int, bus: str, target: str, lotus: str, lotus_token: str, as_json: bool) -> None:
    """Faulty and recovering sectors on chain, with the poster's reasons."""
    async def on_chain(chain) -> W.PosterFaults:
        return W.PosterFaults(miner=miner, faults=await views.faults(chain, chain.policy, miner), skipped=[])
    if lotus:
        r = from_lotus(lotus, lotus_token, miner, on_chain)
    else:
        r = ask(bus, target, W.PosterListFaults(miner=miner))
    if as_json:
        emit_json(r)
        return
    if not r.faults:
        click.echo(f"miner f0{r.miner}: no faulty sectors")
    else:
        click.echo(f"{'DL':>3} {'PART':>4} {'SECTOR':>8} {'STATE':<10} REASON")
        for f in r.faults:
            click.echo(f"{f.deadline:>3} {f.partition:>4} {f.sector:>8} {f.state:<10} {f.reason or '-'}")
    for s in r.skipped:
        click.echo(f"skipped now: sector {s.number}: {s.reason}")


@proving_group.command("check")
@click.argument("index", type=int)
@miner_option
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@bus_option
@poster_option
@json_option
def check(index: int, miner: int, timeout: float, bus: str, target: str, as_json: bool) -> None:
    """Check every sector of deadline INDEX now (files, sizes, comm_r, tree-r-last paths)."""
    r = ask(bus, target, W.PosterCheckDeadline(index=index, miner=miner), timeout=timeout)
    if as_json:
        emit_json(r)
        return
    bad = [s for s in r.sectors if not s.ok]
    click.echo(f"deadline {r.index} of f0{r.miner}: {len(r.sectors)} sectors checked, {len(bad)} failed")
    for s in r.sectors:
        click.echo(f"  partition {s.partition} sector {s.number} ({s.state}): "
                   + ("ok" if s.ok else f"FAILED: {s.reason}"))


COMMANDS = [proving_group]
