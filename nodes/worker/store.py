"""The worker's call store (SQLite, WAL): every call it accepted, until both the manager
(CallReturn) and the scheduler (TaskDone) have acknowledged its end.

    accepted --manager says run--> running --result stored--> done
    accepted --manager refuses--> dropped        accepted --aborted/prepare failed--> done
    running --worker restarted--> running (runs + 1: the computation died with it)

`returned` (the manager acknowledged the result) and `sched_done` (the scheduler
acknowledged TaskDone) are flags on finished calls. After a restart the worker goes on
from what is stored: accepted calls ask the manager again, running ones run again, done
ones are returned again (replayed, never reported failed), unacknowledged TaskDones are
sent again. Each change is committed before the worker tells anyone about it.
"""
from __future__ import annotations

import json
import uuid

import msgspec

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.sqlite_store import SqliteStore

ACCEPTED, RUNNING, DONE, DROPPED = "accepted", "running", "done", "dropped"
ENDED = frozenset({DONE, DROPPED})

TRANSITIONS: dict[tuple[str, str], str] = {
    (ACCEPTED, "start"): RUNNING,
    (ACCEPTED, "refuse"): DROPPED,
    (ACCEPTED, "finish"): DONE,
    (RUNNING, "finish"): DONE,
    (RUNNING, "rerun"): RUNNING,
    (DONE, "returned"): DONE,
}


class CallStoreError(ValueError):
    pass


def moved(call: Call, event: str) -> str:
    """The state `call` goes to on `event` (TRANSITIONS); CallStoreError if it may not."""
    new = TRANSITIONS.get((call.state, event))
    if new is None:
        raise CallStoreError(f"call {call.call_id} is {call.state}: cannot {event} it")
    return new


class Call(msgspec.Struct, kw_only=True):
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
    updated: float = 0.0

    @property
    def sector(self) -> SectorRef:
        return SectorRef(miner=self.miner, number=self.number)


SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, work_id TEXT NOT NULL, task TEXT NOT NULL, miner INTEGER NOT NULL,
    number INTEGER NOT NULL, sector_size INTEGER NOT NULL, params BLOB NOT NULL,
    sources TEXT NOT NULL, state TEXT NOT NULL, runs INTEGER NOT NULL, ok INTEGER,
    result BLOB NOT NULL, error TEXT NOT NULL, returned INTEGER NOT NULL,
    sched_done INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS calls_work ON calls (work_id);
CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
_COLUMNS = ("call_id", "work_id", "task", "miner", "number", "sector_size", "params", "sources",
            "state", "runs", "ok", "result", "error", "returned", "sched_done", "created",
            "updated")


def new_call_id(miner: int, number: int) -> str:
    return f"s-{miner}-{number}-{uuid.uuid4()}"


class CallStore(SqliteStore):
    schema = SCHEMA

    # ---- reading --------------------------------------------------------------------

    def _row(self, row) -> Call:
        d = dict(zip(_COLUMNS, row))
        d["sources"] = json.loads(d["sources"])
        d["ok"] = None if d["ok"] is None else bool(d["ok"])
        d["returned"], d["sched_done"] = bool(d["returned"]), bool(d["sched_done"])
        return Call(**d)

    def get(self, call_id: str) -> Call:
        row = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE call_id = ?",
                              (call_id,)).fetchone()
        if row is None:
            raise CallStoreError(f"no call {call_id!r}")
        return self._row(row)

    def calls(self) -> list[Call]:
        return [self._row(r) for r in self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM calls ORDER BY created, rowid")]

    def live_for(self, work_id: str) -> Call | None:
        """The call for this work not yet returned to the manager, if any."""
        row = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE work_id = ? AND returned = 0 "
            f"ORDER BY created DESC LIMIT 1", (work_id,)).fetchone()
        return None if row is None else self._row(row)

    def unreported(self) -> list[Call]:
        """Calls the scheduler has not heard the end of (it counts them as running)."""
        return [self._row(r) for r in self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE sched_done = 0 ORDER BY created, rowid")]

    def pending(self) -> list[Call]:
        """Calls with something left to do or to tell (what a restart resumes)."""
        return [c for c in self.calls() if not (c.returned and c.sched_done)]

    # ---- changes --------------------------------------------------------------------

    def add(self, work_id: str, task: str, sector: SectorRef, sector_size: int, params: bytes,
            sources: list[str], now: float) -> Call:
        call = Call(call_id=new_call_id(sector.miner, sector.number), work_id=work_id, task=task,
                    miner=sector.miner, number=sector.number, sector_size=sector_size,
                    params=bytes(params), sources=list(sources), state=ACCEPTED, created=now,
                    updated=now)
        self.db.execute(f"INSERT INTO calls VALUES ({', '.join('?' * len(_COLUMNS))})",
                        (call.call_id, call.work_id, call.task, call.miner, call.number,
                         call.sector_size, call.params, json.dumps(call.sources), call.state,
                         0, None, b"", "", 0, 0, now, now))
        return call

    def _move(self, call_id: str, event: str, now: float, **fields) -> Call:
        sets = {"state": moved(self.get(call_id), event), "updated": now, **fields}
        self.db.execute(f"UPDATE calls SET {', '.join(f'{k} = ?' for k in sets)} WHERE call_id = ?",
                        (*sets.values(), call_id))
        return self.get(call_id)

    def start(self, call_id: str, now: float) -> Call:
        """The manager said run; counts a run."""
        return self._move(call_id, "start", now, runs=self.get(call_id).runs + 1)

    def rerun(self, call_id: str, now: float) -> Call:
        """Running after a restart: its computation died with the old process."""
        return self._move(call_id, "rerun", now, runs=self.get(call_id).runs + 1)

    def refuse(self, call_id: str, reason: str, now: float) -> Call:
        return self._move(call_id, "refuse", now, returned=1, error=reason)

    def finish(self, call_id: str, ok: bool, result: bytes, error: str, now: float) -> Call:
        return self._move(call_id, "finish", now, ok=int(ok), result=bytes(result), error=error)

    def mark_returned(self, call_id: str, now: float) -> Call:
        return self._move(call_id, "returned", now, returned=1)

    def mark_sched_done(self, call_id: str) -> None:
        call = self.get(call_id)
        if call.state not in ENDED:
            raise CallStoreError(f"call {call_id} is {call.state}: not ended")
        self.db.execute("UPDATE calls SET sched_done = 1 WHERE call_id = ?", (call_id,))

    def prune(self, before: float) -> int:
        """Forget calls both sides acknowledged before `before`."""
        cur = self.db.execute("DELETE FROM calls WHERE returned = 1 AND sched_done = 1 AND "
                              "updated < ?", (before,))
        return cur.rowcount

    # ---- settings -------------------------------------------------------------------

    def setting(self, key: str, default=None):
        row = self.db.execute("SELECT v FROM settings WHERE k = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))
