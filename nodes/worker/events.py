"""Events: what happens to a worker's calls. The scheduler's requests (Run, Prepare,
Abort), the answers to the core's commands (Announced, Ran, Returned, Reported,
Fetched), and the shell's own news (Restarted, Unrecorded)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.sectors import SectorRef


class Event(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    pass


class Restarted(Event, frozen=True, kw_only=True):
    """The worker (re)started with the stored calls (WorkerCore.restore): go on with each."""
    last_beat: float = 0.0             # the old process's last sign of life (0: unknown)


# -- the scheduler's requests ------------------------------------------------------------------

class Work(Event, frozen=True, kw_only=True):
    request: str                       # the work id
    task: str
    sector: SectorRef
    sector_size: int
    params: bytes = b""
    sources: list[str] = []


class Run(Work, frozen=True, kw_only=True):
    """Run the work (the same work asked again while its call is unfinished: that call)."""


class Prepare(Work, frozen=True, kw_only=True):
    """Get the work's files here before it runs."""


class Abort(Event, frozen=True, kw_only=True):
    request: str


# -- answers ----------------------------------------------------------------------------------

class Unrecorded(Event, frozen=True, kw_only=True):
    """The new call of a Run could not be saved (a full disk): forget it, the scheduler
    asks again."""
    call_id: str


class Announced(Event, frozen=True, kw_only=True):
    """The manager answered CallStarted: run it ("") or why not."""
    call_id: str
    refused: str = ""


class Ran(Event, frozen=True, kw_only=True):
    """The task ended (its fetch included)."""
    call_id: str
    ok: bool
    result: bytes = b""
    error: str = ""


class Returned(Event, frozen=True, kw_only=True):
    """The manager acknowledged the call's CallReturn."""
    call_id: str


class Reported(Event, frozen=True, kw_only=True):
    """The scheduler acknowledged the call's TaskDone."""
    call_id: str


class Fetched(Event, frozen=True, kw_only=True):
    """A preparation's fetch ended: "" or why it failed."""
    request: str
    error: str = ""
