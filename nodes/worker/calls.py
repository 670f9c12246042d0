"""The worker's rules for its calls, without I/O or a clock: what a call still needs
done, and what the scheduler should count as running here. Used by the Trio shell
(nodes.worker.node) and the simulator (tools/sim/worker.py); the calls are
nodes.worker.store.Call, in SQLite there and in memory in the simulator."""
from __future__ import annotations

from collections.abc import Iterable

from zqnode.nodes.wire.scheduler import RunningRequest
from zqnode.nodes.worker.store import ACCEPTED, DONE, RUNNING, Call

DRIVE = "drive"          # ask the manager whether to run it, then run it (again)
RETURN = "return"        # send its result to the manager until acknowledged
REPORT = "report"        # tell the scheduler it ended until acknowledged


def next_steps(call: Call) -> tuple[str, ...]:
    """What is left to do for a call (after a restart, or when it ended)."""
    if call.state in (ACCEPTED, RUNNING):
        return (DRIVE,)
    steps = ()
    if call.state == DONE and not call.returned:
        steps += (RETURN,)
    if not call.sched_done:
        steps += (REPORT,)
    return steps


def needs_fetch(call: Call, prepared: set[str]) -> bool:
    """Files come in the preparing step; tasks the scheduler starts without one (C1, C2
    go straight to 'active', as in Lotus) and GET itself fetch when they run."""
    return call.task == "GET" or call.work_id not in prepared


def running_requests(unreported: Iterable[Call],
                     preparing: Iterable[RunningRequest]) -> list[RunningRequest]:
    """What the scheduler should count as running here: calls whose end it has not
    acknowledged (`unreported`, oldest first), and requests being prepared."""
    out = {c.work_id: RunningRequest(request=c.work_id, task=c.task, sector=c.sector,
                                     sector_size=c.sector_size)
           for c in unreported}
    for rr in preparing:
        out.setdefault(rr.request, rr)
    return list(out.values())
