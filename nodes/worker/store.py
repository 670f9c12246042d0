"""The worker's call store (SQLite, WAL): every call it accepted, until both the manager
(CallReturn) and the scheduler (TaskDone) have acknowledged its end, and a week after.

The worker's core (nodes.worker.core) decides every change of a call; the shell saves
the call the core hands it (`save`) before it tells anyone about the change. After a
restart the core goes on from `pending()`: what is not yet acknowledged by both."""
from __future__ import annotations

import json
import uuid

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.sqlite_store import SqliteStore
from zqnode.nodes.worker.calls import Call


class CallStoreError(ValueError):
    pass


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


def new_call_id(sector: SectorRef) -> str:
    return f"s-{sector.miner}-{sector.number}-{uuid.uuid4()}"


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

    def pending(self) -> list[Call]:
        """Calls with something left to do or to tell (what a restart resumes), oldest first."""
        return [c for c in self.calls() if not (c.returned and c.sched_done)]

    # ---- changes --------------------------------------------------------------------

    def save(self, call: Call) -> None:
        """Insert or update the call (its row keeps its place: rowid orders equal times)."""
        values = (call.call_id, call.work_id, call.task, call.miner, call.number, call.sector_size,
                  bytes(call.params), json.dumps(call.sources), call.state, call.runs,
                  None if call.ok is None else int(call.ok), bytes(call.result), call.error,
                  int(call.returned), int(call.sched_done), call.created, call.updated)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        self.db.execute(f"INSERT INTO calls VALUES ({', '.join('?' * len(_COLUMNS))}) "
                        f"ON CONFLICT (call_id) DO UPDATE SET {updates}", values)

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
