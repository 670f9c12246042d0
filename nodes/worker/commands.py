"""Commands: what the worker's core asks its shell to do. Each carries the cause id of
its sector. `Save` comes before whatever follows it in a list: nothing is said about a
change before the call store holds it (a shell that cannot write holds the rest back)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.worker.calls import Call


class Command(msgspec.Struct, tag=True, kw_only=True, frozen=True):
    cause: str


class CallCommand(Command, frozen=True, kw_only=True):
    call: Call


class Save(CallCommand, frozen=True, kw_only=True):
    """Write the call to the call store; `note`, when given, is worth a log line."""
    note: str = ""


class Announce(CallCommand, frozen=True, kw_only=True):
    """CallStarted to the manager until it answers: Announced."""


class RunTask(CallCommand, frozen=True, kw_only=True):
    """Fetch the sector's files first when `fetch` (GET's result is what it fetched), then
    run the task under its limit and locks: Ran."""
    fetch: bool


class CountRerun(CallCommand, frozen=True, kw_only=True):
    """The call's last run died with the old process about `lost_s` after it began."""
    lost_s: float


class Return(CallCommand, frozen=True, kw_only=True):
    """CallReturn (its result) to the manager until acknowledged: Returned."""


class Report(CallCommand, frozen=True, kw_only=True):
    """SchedTaskDone to the scheduler until acknowledged: Reported."""


class StopCall(Command, frozen=True, kw_only=True):
    """Stop what runs for the call (its announce, fetch or task): it is over, nothing answers."""
    call_id: str


class Fetch(Command, frozen=True, kw_only=True):
    """Get a preparation's files here (unless this worker holds them): Fetched."""
    request: str
    task: str
    sector: SectorRef
    sector_size: int
    params: bytes
    sources: list[str]


class StopFetch(Command, frozen=True, kw_only=True):
    """Stop a preparation's fetch: it is over, nothing answers."""
    request: str


class TellPrepared(Command, frozen=True, kw_only=True):
    """SchedTaskPrepared to the scheduler until acknowledged."""
    request: str
