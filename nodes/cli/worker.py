"""`zqnode worker ...`: one worker's task types and calls.

    zqnode worker tasks enable|disable TASK --worker NAME
    zqnode worker calls --worker NAME [--json]
"""
from __future__ import annotations

import click

from zqnode.nodes.cli.common import bus_option, emit_json, json_option, with_client
from zqnode.nodes.wire.worker import WorkerListCalls, WorkerSetTask

worker_option = click.option("--worker", "worker", required=True, help="The worker's node name.")


@click.group("worker")
def worker_group() -> None:
    """One worker: which task types it takes, what its call store holds."""


@worker_group.group("tasks")
def tasks_group() -> None:
    """Offer or withdraw a task type (kept across restarts; running calls go on)."""


def _set(task: str, enabled: bool, worker: str, bus: str, as_json: bool) -> None:
    reply = with_client(bus, lambda peer: peer.call(worker, WorkerSetTask(task=task.upper(),
                                                                          enabled=enabled)))
    if as_json:
        emit_json(reply)
        return
    click.echo(f"{worker}: {' '.join(reply.tasks)}")


@tasks_group.command("enable")
@click.argument("task")
@worker_option
@bus_option
@json_option
def enable(task: str, worker: str, bus: str, as_json: bool) -> None:
    """Let the worker take TASK (AP, PC1, PC2, C1, FIN, GET, UNS, WDP...)."""
    _set(task, True, worker, bus, as_json)


@tasks_group.command("disable")
@click.argument("task")
@worker_option
@bus_option
@json_option
def disable(task: str, worker: str, bus: str, as_json: bool) -> None:
    """Stop sending TASK to the worker."""
    _set(task, False, worker, bus, as_json)


@worker_group.command("calls")
@worker_option
@bus_option
@json_option
def calls(worker: str, bus: str, as_json: bool) -> None:
    """The worker's call store: every call, its state, runs, and whether the manager
    and the scheduler have acknowledged its end."""
    reply = with_client(bus, lambda peer: peer.call(worker, WorkerListCalls()))
    if as_json:
        emit_json(reply.calls)
        return
    for c in reply.calls:
        acked = ("returned" if c.returned else "return pending") + \
            (", scheduler told" if c.sched_done else ", scheduler not told")
        click.echo(f"{c.call_id}  {c.task:<4} {c.state:<8} runs {c.runs}  {acked}"
                   + (f"  {c.error}" if c.error else ""))


COMMANDS = [worker_group]
