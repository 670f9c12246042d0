"""Bus messages a worker node serves (from the scheduler, other workers and operators)."""
from __future__ import annotations

import msgspec

from zqnode.bus.codec import Msg
from zqnode.nodes.wire.sectors import SectorRef


class WorkerPrepare(Msg):
    """Fetch what the work needs from `sources` unless it is here; answered at once, the
    worker reports SchedTaskPrepared when it is ready."""
    request: str
    task: str
    sector: SectorRef
    sector_size: int
    params: bytes = b""
    sources: list[str] = []


class WorkerRun(Msg):
    """Run the work: answered at once with the call id; the same work asked again while
    its call is unfinished gets the same call."""
    request: str
    task: str
    sector: SectorRef
    sector_size: int
    params: bytes = b""
    sources: list[str] = []


class WorkerAccepted(Msg):
    call_id: str


class WorkerAbort(Msg):
    request: str


class WorkerAck(Msg):
    found: bool = True


class WorkerSectorFiles(Msg):
    """The files of a sector this worker holds, those `task` needs (all for "")."""
    sector: SectorRef
    task: str = ""


class FileEntry(msgspec.Struct, frozen=True):
    name: str                    # relative to the sector's directory
    size: int


class WorkerFileList(Msg):
    files: list[FileEntry]


class WorkerFetch(Msg):
    """Bytes [offset, offset+length) of one file of a sector: the answer carries them as
    a buffer frame, with their sha256 and the file's whole size."""
    sector: SectorRef
    file: str
    offset: int
    length: int


class WorkerChunk(Msg):
    size: int                    # of the whole file
    sha256: str                  # of this chunk


class WorkerSetTask(Msg):
    task: str
    enabled: bool


class WorkerTaskList(Msg):
    tasks: list[str]


class WorkerListCalls(Msg):
    pass


class CallInfo(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    work_id: str
    task: str
    sector: SectorRef
    state: str
    runs: int
    ok: bool | None
    error: str
    returned: bool
    sched_done: bool


class WorkerCallList(Msg):
    worker: str
    calls: list[CallInfo]
