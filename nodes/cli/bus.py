"""Commands that look at the bus: `zqnode tail`, `zqnode bus nodes`, `zqnode bus ping`."""
from __future__ import annotations

import datetime
import json
import sys

import click
import trio

from zqnode.bus.codec import peek_kind, to_plain
from zqnode.bus.peer import Event, Peer
from zqnode.bus.protocol import HUB, ListNodes, NodeList, Ping
from zqnode.nodes.cli.common import bus_option, emit_json, json_option, plain, with_client


def event_record(ev: Event) -> dict:
    env = ev.envelope
    rec = {"topic": ev.topic, "kind": peek_kind(env.body) or "?", "sender": ev.sender,
           "seq": ev.seq, "cause": env.cause, "ts": env.ts, "body": plain(to_plain(env.body))}
    if ev.to:
        rec["to"] = ev.to
        rec["id"] = env.id
        rec["reply"] = env.reply
    if ev.buffers:
        rec["buffers"] = [len(b) for b in ev.buffers]
    if ev.gap:
        rec["gap"] = ev.gap
    return rec


def event_line(rec: dict) -> str:
    t = datetime.datetime.fromtimestamp(rec["ts"]).strftime("%H:%M:%S.%f")[:-3]
    who = f"{rec['sender']}->{rec['to']}#{rec['id']}" if "to" in rec else f"{rec['sender']}#{rec['seq']}"
    body = rec["body"]
    if isinstance(body, dict):
        body = " ".join(f"{k}={json.dumps(v)}" for k, v in body.items() if k != "kind")
    extra = f" (+{len(rec['buffers'])} buffers)" if "buffers" in rec else ""
    gap = f" [missed {rec['gap']}]" if "gap" in rec else ""
    return f"{t} {rec['topic']:<24} {who:<28} {rec['kind']} {body}{extra}{gap}"


@click.command()
@bus_option
@click.option("--topic", "topics", multiple=True, help="Topic prefix (repeatable) [default: all].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tail(bus: str, topics: tuple[str, ...], as_json: bool) -> None:
    """Show every message on the bus (events and tapped RPC), decoded, as it happens."""
    async def follow(peer: Peer) -> None:
        with peer.subscribe(*topics, raw=True) as sub:
            click.echo(f"zqnode tail: following {bus} ({', '.join(topics) or 'every topic'}); "
                       "Ctrl-C to stop", err=True)
            async for ev in sub:
                rec = event_record(ev)
                line = json.dumps(rec) if as_json else event_line(rec)
                try:
                    print(line, flush=True)
                except BrokenPipeError:
                    sys.stderr.close()
                    return
    with_client(bus, follow)


@click.group("bus")
def bus_group() -> None:
    """Look at the bus hub."""


@bus_group.command("nodes")
@bus_option
@json_option
def nodes(bus: str, as_json: bool) -> None:
    """The registered nodes: role, state, when last heard."""
    listing: NodeList = with_client(bus, lambda peer: peer.call(HUB, ListNodes()))
    rows = [{"node_id": n.node_id, "role": n.role, "state": n.state,
             "last_heard_s_ago": round(listing.now - n.last_heard, 3),
             "in_state_s": round(listing.now - n.since, 3), "host": n.host, "pid": n.pid}
            for n in sorted(listing.nodes, key=lambda n: (n.role, n.node_id))]
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{'NODE':<24} {'ROLE':<10} {'STATE':<6} {'LAST HEARD':>11} {'HOST':<16} PID")
    for r in rows:
        click.echo(f"{r['node_id']:<24} {r['role']:<10} {r['state']:<6} "
                   f"{r['last_heard_s_ago']:>9.1f}s {r['host']:<16} {r['pid']}")


@bus_group.command("ping")
@click.argument("target")
@bus_option
@click.option("--count", default=1, show_default=True, type=click.IntRange(1))
@json_option
def ping(target: str, bus: str, count: int, as_json: bool) -> None:
    """Round-trip a Ping through the hub to TARGET (a node id, @role, or hub)."""
    async def go(peer: Peer) -> list[dict]:
        out = []
        for _ in range(count):
            t0 = trio.current_time()
            pong = await peer.call(target, Ping())
            out.append({"node_id": pong.node_id, "role": pong.role,
                        "ms": round((trio.current_time() - t0) * 1e3, 3)})
        return out
    pongs = with_client(bus, go)
    if as_json:
        emit_json(pongs)
        return
    for p in pongs:
        click.echo(f"pong from {p['node_id']} ({p['role']}) in {p['ms']:.3f} ms")


COMMANDS = [tail, bus_group]
