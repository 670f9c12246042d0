"""Bus messages the manager serves: the requester API (do / wait / consume / abort /
jobs) for remote requesters such as the poster and the CLI, and the workers' call
reports (CallStarted, CallReturn). Results travel as a buffer frame."""
from __future__ import annotations

import msgspec

from zqnode.bus.codec import Msg
from zqnode.nodes.wire.sectors import SectorRef

# Error codes of refusals (bus Error.code), turned back into exceptions by BusRequester.
UNKNOWN_WORK = "unknown_work"
WORK_FAILED = "work_failed"
WORK_ABORTED = "work_aborted"
INVALID_TRANSITION = "invalid_transition"
CALL_REFUSED = "call_refused"


class MgrDo(Msg):
    task: str
    params: bytes                # msgpack of the task's params struct
    sector: SectorRef
    sector_size: int
    priority: int = 0


class MgrWork(Msg):
    work_id: str
    state: str


class MgrWait(Msg):
    """Answered when the work is finished or after `timeout_s` (then `finished` is
    False: ask again). A failed or aborted work is a refusal (work_failed/work_aborted)."""
    work_id: str
    timeout_s: float = 10.0


class MgrResult(Msg):
    work_id: str
    finished: bool
    state: str


class MgrConsume(Msg):
    work_id: str


class MgrAck(Msg):
    pass


class MgrAbort(Msg):
    job: str                     # a work id or a unique prefix of one


class MgrAborted(Msg):
    work_id: str


class MgrJobs(Msg):
    pass


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    work_id: str
    task: str
    sector: SectorRef
    state: str                   # manager state
    # queued, assigned, preparing, prepared, running, ret-wait, returned, failed, aborted
    status: str
    worker: str
    call_id: str
    age_s: float
    error: str = ""


class MgrJobList(Msg):
    jobs: list[JobInfo]
    scheduler: bool              # whether the scheduler answered (else no assigned/prepared detail)


class CallStarted(Msg):
    """Worker -> manager before it runs a call; refused (call_refused) when the work
    must not run (its result is stored, it was aborted, or it is unknown)."""
    work_id: str
    call_id: str


class CallReturn(Msg):
    """Worker -> manager: the call's result (first buffer frame) or error; retried until
    a ReturnAck. The sender (stamped by the hub) now holds the sector's files."""
    work_id: str
    call_id: str
    ok: bool
    error: str = ""


class ReturnAck(Msg):
    outcome: str                 # stored | duplicate | ignored
