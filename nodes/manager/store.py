"""The manager's SQLite file (WAL): every WorkState not yet consumed, with its result,
and the storage index. The shell applies a core step's Save/Delete/Located commands in
one transaction and commits before it says anything on the bus."""
from __future__ import annotations

import msgspec

from zqnode.nodes.manager.tracker import Command, Delete, Located, Save, WorkState
from zqnode.nodes.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS works (work_id TEXT PRIMARY KEY, state TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS locations (miner INTEGER, number INTEGER, worker TEXT NOT NULL,
                                      PRIMARY KEY (miner, number));
"""

_enc = msgspec.msgpack.Encoder()
_work = msgspec.msgpack.Decoder(WorkState)


class ManagerStore(SqliteStore):
    schema = SCHEMA

    def load(self) -> tuple[list[WorkState], dict[tuple[int, int], str]]:
        works = sorted((self.decoded(_work, b, "a work")
                        for (b,) in self.db.execute("SELECT body FROM works")),
                       key=lambda w: (w.created, w.work_id))
        locations = {(m, n): w for m, n, w in self.db.execute("SELECT miner, number, worker FROM locations")}
        return works, locations

    def apply(self, commands: list[Command]) -> None:
        """Persist what the commands change, in one transaction (nothing when none do)."""
        rows = [c for c in commands if isinstance(c, (Save, Delete, Located))]
        if not rows:
            return
        with self.transaction():
            for c in rows:
                if isinstance(c, Save):
                    self.db.execute("INSERT OR REPLACE INTO works VALUES (?, ?, ?)",
                                    (c.work.work_id, c.work.state, _enc.encode(c.work)))
                elif isinstance(c, Delete):
                    self.db.execute("DELETE FROM works WHERE work_id = ?", (c.work_id,))
                elif c.worker:
                    self.db.execute("INSERT OR REPLACE INTO locations VALUES (?, ?, ?)",
                                    (c.miner, c.number, c.worker))
                else:
                    self.db.execute("DELETE FROM locations WHERE miner = ? AND number = ?",
                                    (c.miner, c.number))
