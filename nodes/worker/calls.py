"""A worker's call: what it records of one run of a work, and the moves its state may
make (the table the core follows; nodes.worker.core).

    accepted --start (the manager says run)--> running --finish (result stored)--> done
    accepted --refuse (the manager says no)--> dropped
    accepted --finish (aborted)--> done
    running --rerun (the worker restarted: the computation died with it)--> running
    done --returned (the manager acknowledged the result)--> done

`returned` and `sched_done` (the scheduler acknowledged TaskDone) are flags on ended
calls; a call both acknowledged is over (the call store keeps it a week)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.sectors import SectorRef

ACCEPTED, RUNNING, DONE, DROPPED = "accepted", "running", "done", "dropped"
ENDED = frozenset({DONE, DROPPED})
ABORTED = "aborted"               # the error of a call (or a preparation) aborted

TRANSITIONS: dict[tuple[str, str], str] = {
    (ACCEPTED, "start"): RUNNING,
    (ACCEPTED, "refuse"): DROPPED,
    (ACCEPTED, "finish"): DONE,
    (RUNNING, "finish"): DONE,
    (RUNNING, "rerun"): RUNNING,
    (DONE, "returned"): DONE,
}


class CallError(ValueError):
    pass


def moved(call: Call, event: str) -> str:
    """The state `call` goes to on `event` (TRANSITIONS); CallError if it may not."""
    new = TRANSITIONS.get((call.state, event))
    if new is None:
        raise CallError(f"call {call.call_id} is {call.state}: cannot {event} it")
    return new


class Call(msgspec.Struct, kw_only=True, frozen=True):
    call_id: str
    work_id: str
    task: str
    miner: int
    number: int
    sector_size: int
    params: bytes
    sources: list[str]
    state: str
    runs: int = 0                # times the task was started
    ok: bool | None = None
    result: bytes = b""
    error: str = ""
    returned: bool = False       # the manager acknowledged the result (or refused the call)
    sched_done: bool = False     # the scheduler acknowledged TaskDone
    created: float = 0.0
    updated: float = 0.0         # of its state (a run's start: what a crash lost is counted from it)

    @property
    def sector(self) -> SectorRef:
        return SectorRef(miner=self.miner, number=self.number)

    @property
    def cause(self) -> str:
        return f"s-{self.miner}-{self.number}"
