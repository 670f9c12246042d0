"""`zqnode sectors ...`: pledge CC sectors, add deal pieces, list and inspect sectors,
resume a paused one (or jump it to a state, as damocles' `resume --state`), remove,
rebuild or unseal one. Every command asks the sealing state machine in the manager
("@manager" by default) and most take --json."""
from __future__ import annotations

import datetime
import pathlib

import click

from zqnode.nodes.cli.common import bus_option, emit_json, json_option, with_client
from zqnode.nodes.wire import sealing as W

manager_option = click.option("--manager", "target", default="@manager", show_default=True,
                              help="The manager node (a node id or @manager).")


def ask(bus: str, target: str, msg, buffers=(), timeout: float = 15.0):
    return with_client(bus, lambda peer: peer.call(target, msg, buffers=buffers, timeout=timeout),
                       timeout=timeout)


def _epoch(e: int) -> str:
    return "-" if e < 0 else str(e)


@click.group("sectors")
def sectors_group() -> None:
    """Sectors being sealed and sealed: pledge, add-piece, list, status, resume, remove,
    terminate, extend."""


@sectors_group.command("pledge")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="How many CC sectors.")
@bus_option
@manager_option
@json_option
def pledge(count: int, bus: str, target: str, as_json: bool) -> None:
    """Seal committed-capacity sectors (no deal data)."""
    r = ask(bus, target, W.SealingPledge(count=count))
    if as_json:
        emit_json(r)
        return
    click.echo(f"pledged sector{'s' if len(r.numbers) > 1 else ''} {', '.join(map(str, r.numbers))}")


@sectors_group.command("add-piece")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@bus_option
@manager_option
@json_option
def add_piece(file: pathlib.Path, bus: str, target: str, as_json: bool) -> None:
    """Put FILE into a deal sector: its CommP, its aligned place, zero filler around it."""
    data = file.read_bytes()
    r = ask(bus, target, W.SealingAddPiece(name=file.name), buffers=[data])
    if as_json:
        emit_json(r)
        return
    click.echo(f"piece {r.piece_cid} ({r.payload_size} bytes, {r.padded_size} padded) -> "
               f"sector {r.sector} at offset {r.offset}")


@sectors_group.command("list")
@click.option("--states", default="", help="Only these states (comma-separated).")
@bus_option
@manager_option
@json_option
def list_(states: str, bus: str, target: str, as_json: bool) -> None:
    """Every sector: state, kind, the epochs it reached, errors."""
    wanted = [s.strip() for s in states.split(",") if s.strip()]
    r = ask(bus, target, W.SealingList(states=wanted))
    if as_json:
        emit_json(r)
        return
    click.echo(f"{'SECTOR':>6} {'STATE':<22} {'KIND':<4} {'PIECES':>6} {'TICKET':>7} {'PRECOMMIT':>9} "
               f"{'SEED':>6} {'COMMIT':>7} {'RETRIES':>7} ERROR")
    for s in r.sectors:
        state = s.state + (" (paused)" if s.paused else "")
        click.echo(f"{s.number:>6} {state:<22} {s.kind:<4} {s.pieces:>6} {_epoch(s.ticket_epoch):>7} "
                   f"{_epoch(s.precommit_epoch):>9} {_epoch(s.seed_epoch):>6} "
                   f"{_epoch(s.commit_epoch):>7} {s.retries:>7} {s.last_error or ''}")
    click.echo(f"{len(r.sectors)} sectors; chain head {r.head}")


@sectors_group.command("status")
@click.argument("number", type=int)
@click.option("--log", "with_log", is_flag=True, help="Every event, with the state it led to.")
@bus_option
@manager_option
@json_option
def status(number: int, with_log: bool, bus: str, target: str, as_json: bool) -> None:
    """One sector's record (and its event log)."""
    r = ask(bus, target, W.SealingStatus(number=number, log=with_log))
    if as_json:
        emit_json(r)
        return
    i = r.info
    click.echo(f"sector {i['number']} ({i['kind']}, cause {i['cause']}): {i['state']}"
               + (" (paused)" if i["paused"] else ""))
    if i["last_error"]:
        click.echo(f"last error: {i['last_error']} (errors in a row: {i['retries']})")
    click.echo(f"ticket    epoch {_epoch(i['ticket_epoch'])} {i['ticket'] or '-'}")
    click.echo(f"comm_d    {i['comm_d'] or '-'}")
    click.echo(f"comm_r    {i['comm_r'] or '-'}")
    click.echo(f"precommit epoch {_epoch(i['precommit_epoch'])} msg {i['precommit_msg'] or '-'}")
    click.echo(f"seed      epoch {_epoch(i['seed_epoch'])} {i['seed'] or '-'}")
    click.echo(f"commit    epoch {_epoch(i['commit_epoch'])} msg {i['commit_msg'] or '-'}")
    if i["update_comm_r"] or i["key_pieces"]:
        click.echo(f"snapdeals comm_r_new {i['update_comm_r'] or '-'} msg {i['update_msg'] or '-'} "
                   f"landed {_epoch(i['update_epoch'])}")
    click.echo(f"counts    pc1 fails {i['pc1_fails']}, pc2 fails {i['pc2_fails']}, "
               f"invalid proofs {i['invalid_proofs']}")
    for p in i["pieces"]:
        kind = "filler" if not p["path"] else "piece "
        click.echo(f"{kind}    offset {p['offset']:>10} size {p['padded_size']:>10} "
                   f"comm_p {p['comm_p']}")
    for e in r.log:
        t = datetime.datetime.fromtimestamp(e["ts"]).strftime("%H:%M:%S")
        data = " ".join(f"{k}={_short(v)}" for k, v in e["data"].items())
        note = f"  ({e['note']})" if e["note"] else ""
        click.echo(f"  {t} #{e['step']:<3} {e['prev'] or 'new':>20} -> {e['state']:<20} "
                   f"{e['event']} {data}{note}")


def _short(v) -> str:
    s = str(v)
    return s if len(s) <= 24 else s[:16] + "…"


def _state_line(r: W.SealingSectorState) -> str:
    return f"sector {r.number}: {r.state}" + (" (paused)" if r.paused else "")


def _show_state(r: W.SealingSectorState, as_json: bool) -> None:
    if as_json:
        emit_json(r)
    else:
        click.echo(_state_line(r))


@sectors_group.command("resume")
@click.argument("number", type=int)
@click.option("--state", default="", help="Go to this state (Aborted drops the sector) "
                                          "[default: retry where it is].")
@bus_option
@manager_option
@json_option
def resume(number: int, state: str, bus: str, target: str, as_json: bool) -> None:
    """Resume a paused sector, or move it to another state."""
    _show_state(ask(bus, target, W.SealingResume(number=number, state=state)), as_json)


@sectors_group.command("remove")
@click.argument("number", type=int)
@bus_option
@manager_option
@json_option
def remove(number: int, bus: str, target: str, as_json: bool) -> None:
    """Stop sealing the sector, abort its work and delete its files."""
    _show_state(ask(bus, target, W.SealingRemove(number=number)), as_json)


@sectors_group.command("terminate")
@click.argument("number", type=int)
@bus_option
@manager_option
@json_option
def terminate(number: int, bus: str, target: str, as_json: bool) -> None:
    """Terminate a proven sector on chain (its power goes, the poster stops proving it),
    then delete its files."""
    _show_state(ask(bus, target, W.SealingTerminate(number=number)), as_json)


@sectors_group.command("extend")
@click.argument("number", type=int)
@click.option("--expiration", type=int, required=True, help="The new expiration epoch.")
@bus_option
@manager_option
@json_option
def extend(number: int, expiration: int, bus: str, target: str, as_json: bool) -> None:
    """Move a proven sector's expiration later (ExtendSectorExpiration2)."""
    r = ask(bus, target, W.SealingExtend(number=number, expiration=expiration))
    if as_json:
        emit_json(r)
        return
    click.echo(f"sector {r.number}: ExtendSectorExpiration2 sent as {r.msg_id} (expiration {r.expiration})")


@sectors_group.command("rebuild")
@click.argument("number", type=int)
@bus_option
@manager_option
@json_option
def rebuild(number: int, bus: str, target: str, as_json: bool) -> None:
    """Seal a lost replica again (same ticket; checked against the chain's comm_r)."""
    _show_state(ask(bus, target, W.SealingRebuild(number=number)), as_json)


@sectors_group.command("snap-up")
@click.argument("number", type=int)
@bus_option
@manager_option
@json_option
def snap_up(number: int, bus: str, target: str, as_json: bool) -> None:
    """SnapDeals: a proving CC sector takes the next deal pieces (`sectors add-piece`) into
    its replica, without sealing again."""
    _show_state(ask(bus, target, W.SealingSnapUp(number=number)), as_json)


@sectors_group.command("abort-upgrade")
@click.argument("number", type=int)
@bus_option
@manager_option
@json_option
def abort_upgrade(number: int, bus: str, target: str, as_json: bool) -> None:
    """Give a SnapDeals upgrade up before its update is sent: the CC sector proves on."""
    _show_state(ask(bus, target, W.SealingAbortUpgrade(number=number)), as_json)


@sectors_group.command("unseal")
@click.argument("number", type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Where the manager writes the data (a path on its machine).")
@click.option("--piece", default=-1, help="Only this piece [default: the whole sector].")
@bus_option
@manager_option
@json_option
def unseal(number: int, out: pathlib.Path, piece: int, bus: str, target: str, as_json: bool) -> None:
    """Write a sealed sector's data (or one piece of it) back out."""
    r = ask(bus, target, W.SealingUnseal(number=number, out=str(out.resolve()), piece=piece))
    _show_state(r, as_json)


COMMANDS = [sectors_group]
