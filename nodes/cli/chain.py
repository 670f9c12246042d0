"""`zqnode chain ...`: look at the chain node's head, miners, deadlines, sectors and
messages, and (devnet) make it reorg or add funds. Bytes show as hex, in text and in
--json; amounts are nanoFIL in --json and FIL in text."""
from __future__ import annotations

import click

from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.funds import format_fil, parse_fil
from zqnode.nodes.cli.common import bus_option, emit_json, json_option, miner_option, with_client
from zqnode.nodes.cli.lotus import from_lotus, lotus_options


def ask(bus: str, fn):
    return with_client(bus, lambda peer: fn(BusChainAPI(peer)))


async def _the_miner(api: BusChainAPI, miner: int) -> int:
    """`miner`, or the chain's only miner when it is 0."""
    if miner:
        return miner
    miners = (await api.info()).miners
    if len(miners) != 1:
        raise click.ClickException(f"the chain has miners {ids(f'f0{m}' for m in miners)}: "
                                   f"choose one with --miner")
    return miners[0]


def ids(xs) -> str:
    return ",".join(map(str, xs)) or "-"


@click.group("chain")
def chain_group() -> None:
    """The chain: head, miners, deadlines, sectors, messages; reorg and fund on a devnet."""


@chain_group.command("head")
@bus_option
@json_option
def head(bus: str, as_json: bool) -> None:
    """The head tipset and the chain's settings."""
    info = ask(bus, lambda api: api.info())
    if as_json:
        emit_json(info)
        return
    h = info.head
    click.echo(f"epoch {h.epoch}  key {h.key[:16]}  parent {h.parent[:16] or '-'}  "
               f"messages {len(h.messages)}")
    click.echo(f"network {info.network}  epoch {info.epoch_seconds:g}s  finality {info.finality}  "
               f"pool {info.pool}  reorgs {info.fork}  miners {ids(f'f0{m}' for m in info.miners)}")
    click.echo(f"base fee {info.base_fee} attoFIL/gas")


@chain_group.command("reorg")
@click.option("--depth", type=int, required=True, help="Tipsets to replace.")
@bus_option
@json_option
def reorg(depth: int, bus: str, as_json: bool) -> None:
    """Replace the last DEPTH tipsets with new empty ones (devnet only); their messages go
    back to the pool and the replaced epochs draw new randomness."""
    r = ask(bus, lambda api: api.reorg(depth))
    if as_json:
        emit_json(r)
        return
    for t in r.reverted:
        click.echo(f"reverted {t.epoch} {t.key[:16]} ({len(t.messages)} messages)")
    for t in r.applied:
        click.echo(f"applied  {t.epoch} {t.key[:16]}")


@chain_group.command("fund")
@click.argument("address")
@click.argument("amount")
@bus_option
@json_option
def fund(address: str, amount: str, bus: str, as_json: bool) -> None:
    """Add AMOUNT (FIL, e.g. 10 or "0.5 FIL" or "300 nFIL") to ADDRESS, an account such as
    the worker's or a miner actor (f0<id>), on a devnet."""
    try:
        nano = parse_fil(amount)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="AMOUNT") from None
    if not nano:
        raise click.BadParameter("add more than 0 FIL", param_hint="AMOUNT")
    r = ask(bus, lambda api: api.fund(address, nano))
    if as_json:
        emit_json(r)
        return
    click.echo(f"{r.address}: added {format_fil(nano)}, balance {format_fil(r.balance)}")


@chain_group.command("miner")
@miner_option("Only this miner [default: every miner of the chain].")
@bus_option
@lotus_options
@json_option
def miner(miner: int, bus: str, lotus: str, lotus_token: str, as_json: bool) -> None:
    """Miners (or one): power, sectors, faults, penalties, terminations, expirations,
    deadline; then funds: available, locked (deposits, pledge, vesting) and the balance of
    the addresses that send its messages. A Lotus node (--lotus) does not count penalties,
    terminations and expirations: they show as "-"."""
    if lotus:
        views = from_lotus(lotus, lotus_token, miner, lambda chain: _one(chain.miner(miner)))
    else:
        views = ask(bus, lambda api: _one(api.miner(miner)) if miner else api.miners())
    if as_json:
        emit_json(views[0] if miner else views)
        return
    click.echo(f"{'MINER':<8} {'WORKER':<8} {'SIZE':>10} {'POWER':>12} {'SECTORS':>7} {'ACTIVE':>6} "
               f"{'UNPROVEN':>8} {'FAULTY':>6} {'RECOVER':>7} {'PRECOMMIT':>9} {'PENALTIES':>9} "
               f"{'TERMINATED':>10} {'EXPIRED':>7} DEADLINE")
    for m in views:
        d = m.deadline
        counts = (m.precommits, m.penalties, m.terminated, m.expired) if m.counted else ("-",) * 4
        click.echo(f"f0{m.actor_id:<6} {m.worker:<8} {m.sector_size:>10} {m.power:>12} {m.sectors:>7} "
                   f"{m.active:>6} {m.unproven:>8} {m.faulty:>6} {m.recovering:>7} {counts[0]:>9} "
                   f"{counts[1]:>9} {counts[2]:>10} {counts[3]:>7} {d.index} [{d.open}, {d.close})")
    for m in views:
        f = format_fil
        click.echo(f"f0{m.actor_id} funds: balance {f(m.balance)}, available {f(m.available)}; locked: "
                   f"pre-commit deposits {f(m.precommit_deposits)}, initial pledge {f(m.initial_pledge)}, "
                   f"vesting {f(m.vesting)}; fee debt {f(m.fee_debt)}; burnt {f(m.burnt)}")
        click.echo(f"f0{m.actor_id} senders: " + ", ".join(f"{a} {f(b)}" for a, b in m.accounts.items()))


async def _one(coro):
    return [await coro]


@chain_group.command("deadline")
@click.argument("index", type=click.IntRange(0), required=False)
@miner_option("The miner [default: the chain's only miner].")
@bus_option
@json_option
def deadline(index: int | None, miner: int, bus: str, as_json: bool) -> None:
    """Deadline INDEX [default: the current one]: its window and its partitions."""
    async def go(api: BusChainAPI):
        actor = await _the_miner(api, miner)
        info = await api.deadline(actor)
        return actor, info, await api.partitions(actor, info.index if index is None else index)
    miner, info, view = ask(bus, go)
    if as_json:
        emit_json({"current": info, "deadline": view})
        return
    click.echo(f"deadline {view.index} of f0{miner}; current {info.index}: open {info.open} "
               f"close {info.close} challenge {info.challenge} fault cutoff {info.fault_cutoff} "
               f"(epoch {info.current_epoch})")
    if not view.partitions:
        click.echo("no partitions")
    for p in view.partitions:
        posted = "posted" if p.index in view.posted else "not posted"
        click.echo(f"partition {p.index} ({posted}): sectors {ids(p.sectors)}  active {ids(p.active)}  "
                   f"unproven {ids(p.unproven)}  faults {ids(p.faults)}  recoveries {ids(p.recoveries)}")


@chain_group.command("sector")
@click.argument("number", type=click.IntRange(0))
@miner_option("The miner [default: the chain's only miner].")
@bus_option
@json_option
def sector(number: int, miner: int, bus: str, as_json: bool) -> None:
    """Sector NUMBER: on chain, or pre-committed."""
    async def go(api: BusChainAPI):
        actor = await _the_miner(api, miner)
        return actor, await api.sector(actor, number), await api.precommit(actor, number)
    miner, s, pc = ask(bus, go)
    if as_json:
        emit_json({"sector": s, "precommit": pc})
        return
    if s is not None:
        click.echo(f"sector {s.number}: {s.state}, deadline {s.deadline} partition {s.partition}, "
                   f"activated at {s.activation}, {s.sealed_cid}"
                   + (f" (SnapDeals: updated from {s.sector_key_cid})" if s.sector_key_cid else ""))
    elif pc is not None:
        click.echo(f"sector {pc.sector_number}: pre-committed at {pc.precommit_epoch}, seed at "
                   f"{pc.seed_epoch}, prove by {pc.prove_by}, ticket epoch {pc.seal_rand_epoch}")
    else:
        raise click.ClickException(f"miner f0{miner} has no sector {number}")


@chain_group.command("message")
@click.argument("msg_id")
@bus_option
@json_option
def message(msg_id: str, bus: str, as_json: bool) -> None:
    """Where message MSG_ID stands: pending, landed (with its receipt) or unknown."""
    look = ask(bus, lambda api: api.lookup(msg_id))
    if as_json:
        emit_json(look)
        return
    if look.status != "landed":
        click.echo(f"{msg_id}: {look.status} (head {look.head})")
        return
    r = look.receipt
    click.echo(f"{msg_id}: landed at {look.epoch} ({look.confirmations} confirmations), exit code "
               f"{r.exit_code}{': ' + r.error if r.error else ''}")


COMMANDS = [chain_group]
