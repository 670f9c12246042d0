"""The sealing state machine's SQLite store (WAL) in the manager's repo: each sector as it
is after its last event, its event log, the next sector number, and the chain messages
it sent (nodes/chain/api.py MessageSender: sent once, so a restart finds them instead of
sending again). Every change is one transaction, committed before anything is said or done."""
from __future__ import annotations

import json

import msgspec

from zqnode.nodes.sealing.sector import LogEntry, SectorInfo
from zqnode.nodes.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS sectors (
    number INTEGER PRIMARY KEY, state TEXT NOT NULL, info BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sector_log (
    number INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, step INTEGER NOT NULL,
    event TEXT NOT NULL, prev TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (number, seq));
CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    msg_id TEXT PRIMARY KEY, number INTEGER NOT NULL, key TEXT NOT NULL, nonce INTEGER NOT NULL,
    body BLOB NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_key ON messages (number, key);
"""

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(SectorInfo)


class StoreError(ValueError):
    pass


class StoredMessage(msgspec.Struct, kw_only=True, frozen=True):
    msg_id: str
    number: int
    key: str
    nonce: int
    body: bytes
    status: str                        # sent (files before MessageSender: prepared | refused)
    error: str
    created: float


class SealingStore(SqliteStore):
    schema = SCHEMA
    synchronous = "NORMAL"

    # -- settings --------------------------------------------------------------------------
    def setting(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT v FROM settings WHERE k = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_setting(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO settings (k, v) VALUES (?, ?)", (key, value))

    def check_setting(self, key: str, value: str) -> None:
        """Record `value` the first time; later it must be the same (one miner, one sector
        size per store)."""
        stored = self.setting(key)
        if stored is None:
            self.set_setting(key, value)
        elif stored != value:
            raise StoreError(f"{self.path} holds sectors with {key} {stored}, not {value}")

    def next_number(self, default: int) -> int:
        return int(self.setting("next_number", str(default)))

    # -- sectors ------------------------------------------------------------------------------
    def save(self, changes: list[tuple[SectorInfo, list[LogEntry], int]]) -> None:
        """Sectors with their new log entries and the next sector number, in one
        transaction: what one event changed (an aborted upgrade's pieces given to other
        sectors) is on disk together or not at all."""
        with self.transaction():
            for info, log, next_number in changes:
                self.db.execute("INSERT OR REPLACE INTO sectors (number, state, info, updated) "
                                "VALUES (?, ?, ?, ?)", (info.number, info.state, _enc.encode(info),
                                                        info.updated))
                if log:
                    seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM sector_log WHERE number = ?",
                                          (info.number,)).fetchone()[0]
                    self.db.executemany(
                        "INSERT INTO sector_log (number, seq, ts, step, event, prev, state, data, note) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(info.number, seq + i, e.ts, e.step, e.event, e.prev, e.state,
                          json.dumps(e.data), e.note) for i, e in enumerate(log, 1)])
                self.db.execute("INSERT OR REPLACE INTO settings (k, v) VALUES ('next_number', ?)",
                                (str(next_number),))

    def sectors(self) -> list[SectorInfo]:
        return [self.decoded(_dec, row[0], "a sector") for row in
                self.db.execute("SELECT info FROM sectors ORDER BY number")]

    def log(self, number: int, limit: int = 0) -> list[LogEntry]:
        sql = ("SELECT ts, step, event, data, prev, state, note FROM sector_log WHERE number = ? "
               "ORDER BY seq")
        rows = self.db.execute(sql, (number,)).fetchall()
        if limit:
            rows = rows[-limit:]
        return [LogEntry(ts=r[0], step=r[1], event=r[2], data=json.loads(r[3]), prev=r[4],
                         state=r[5], note=r[6]) for r in rows]

    def count_events(self, event: str) -> dict[int, int]:
        """How many times each sector logged `event` (e.g. PreCommit1Done)."""
        return dict(self.db.execute("SELECT number, COUNT(*) FROM sector_log WHERE event = ? "
                                    "GROUP BY number", (event,)).fetchall())

    # -- messages ----------------------------------------------------------------------------------
    def add_message(self, *, msg_id: str, number: int, key: str, nonce: int, body: bytes,
                    created: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO messages (msg_id, number, key, nonce, body, status, "
                        "error, created) VALUES (?, ?, ?, ?, ?, 'sent', '', ?)",
                        (msg_id, number, key, nonce, body, created))

    def messages(self, number: int, key: str | None = None) -> list[StoredMessage]:
        """The sector's messages (those under `key`), newest first."""
        sql = ("SELECT msg_id, number, key, nonce, body, status, error, created FROM messages "
               "WHERE number = ?")
        args: tuple = (number,)
        if key is not None:
            sql += " AND key = ?"
            args += (key,)
        rows = self.db.execute(sql + " ORDER BY created DESC, rowid DESC", args).fetchall()
        return [StoredMessage(msg_id=r[0], number=r[1], key=r[2], nonce=r[3], body=bytes(r[4]),
                              status=r[5], error=r[6], created=r[7]) for r in rows]
