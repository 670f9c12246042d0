"""The poster's SQLite file (WAL) under its repo: every proof built and every message
pushed, written before the push, so a poster killed mid-deadline finds them again, and
the outcome of each deadline for the operator.

    proofs    (miner, open, randomness, batch) -> the batch's partition proofs and the
              sectors left out of them
    messages  msg_id -> what it carries (post batch, faults, recoveries), for which
              deadline and randomness, its nonce, and where it stands (pushed, refused,
              landed, failed, dropped)
    outcomes  (miner, open) -> how the deadline ended
"""
from __future__ import annotations

import msgspec

from zqnode.nodes.poster.events import PartitionProof, StoreProofs
from zqnode.nodes.wire.poster import DeadlineOutcome, MessageRow, SkippedSector
from zqnode.nodes.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS proofs (
    miner INTEGER NOT NULL, open INTEGER NOT NULL, randomness BLOB NOT NULL, batch INTEGER NOT NULL,
    deadline INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (miner, open, randomness, batch));
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, msg_id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL,
    miner INTEGER NOT NULL, deadline INTEGER NOT NULL, open INTEGER NOT NULL,
    randomness BLOB NOT NULL, batch INTEGER NOT NULL, nonce INTEGER NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_deadline ON messages (miner, open, randomness, batch);
CREATE TABLE IF NOT EXISTS outcomes (
    miner INTEGER NOT NULL, open INTEGER NOT NULL, deadline INTEGER NOT NULL,
    status TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (miner, open));
"""

STATUSES = ("pushed", "refused", "landed", "failed", "dropped")


class StoreError(ValueError):
    pass


class StoredProofs(msgspec.Struct, kw_only=True):
    partitions: list[PartitionProof]
    skipped: list[SkippedSector] = []


class StoredBatchRow(msgspec.Struct, kw_only=True):
    batch: int
    partitions: list[PartitionProof]
    skipped: list[SkippedSector]
    msg_id: str                        # the latest message pushed for it ("" if none)


_enc = msgspec.msgpack.Encoder()
_proofs = msgspec.msgpack.Decoder(StoredProofs)
_outcome = msgspec.msgpack.Decoder(DeadlineOutcome)


class PosterStore(SqliteStore):
    schema = SCHEMA
    synchronous = "NORMAL"

    # -- proofs ------------------------------------------------------------------------------
    def save_proofs(self, cmd: StoreProofs) -> None:
        body = _enc.encode(StoredProofs(partitions=cmd.partitions, skipped=cmd.skipped))
        self.db.execute("INSERT OR REPLACE INTO proofs VALUES (?, ?, ?, ?, ?, ?)",
                        (cmd.miner, cmd.open, cmd.randomness, cmd.batch, cmd.deadline, body))

    def stored_batches(self, miner: int, open_: int, randomness: bytes) -> list[StoredBatchRow]:
        """The batches proven for this deadline and randomness, each with its latest
        message (a pushed, landed, failed or dropped one; refused pushes do not count)."""
        out = []
        for batch, body in self.db.execute(
                "SELECT batch, body FROM proofs WHERE miner = ? AND open = ? AND randomness = ? "
                "ORDER BY batch", (miner, open_, randomness)):
            row = self.db.execute(
                "SELECT msg_id FROM messages WHERE miner = ? AND open = ? AND randomness = ? AND "
                "batch = ? AND kind = 'post' AND status != 'refused' ORDER BY seq DESC LIMIT 1",
                (miner, open_, randomness, batch)).fetchone()
            stored = self.decoded(_proofs, body, "stored proofs")
            out.append(StoredBatchRow(batch=batch, partitions=stored.partitions,
                                      skipped=stored.skipped, msg_id=row[0] if row else ""))
        return out

    # -- messages ----------------------------------------------------------------------------------
    def add_message(self, *, msg_id: str, kind: str, miner: int, deadline: int, open_: int,
                    randomness: bytes, batch: int, nonce: int, body: bytes) -> None:
        self.db.execute(
            "INSERT INTO messages (msg_id, kind, miner, deadline, open, randomness, batch, nonce, "
            "status, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pushed', ?)",
            (msg_id, kind, miner, deadline, open_, randomness, batch, nonce, body))

    def set_status(self, msg_id: str, status: str, reason: str = "") -> None:
        if status not in STATUSES:
            raise StoreError(f"unknown message status {status!r} (known: {', '.join(STATUSES)})")
        cur = self.db.execute("UPDATE messages SET status = ?, reason = ? WHERE msg_id = ?",
                              (status, reason, msg_id))
        if cur.rowcount != 1:
            raise StoreError(f"no stored message {msg_id}")

    def messages(self, miner: int, open_: int | None = None) -> list[MessageRow]:
        query = ("SELECT msg_id, kind, miner, deadline, open, batch, nonce, status, reason "
                 "FROM messages WHERE miner = ?")
        args: tuple = (miner,)
        if open_ is not None:
            query += " AND open = ?"
            args += (open_,)
        return [MessageRow(msg_id=r[0], kind=r[1], miner=r[2], deadline=r[3], open=r[4], batch=r[5],
                           nonce=r[6], status=r[7], reason=r[8])
                for r in self.db.execute(query + " ORDER BY seq", args)]

    # -- outcomes --------------------------------------------------------------------------------------
    def save_outcome(self, outcome: DeadlineOutcome) -> None:
        self.db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)",
                        (outcome.miner, outcome.open, outcome.index, outcome.status,
                         _enc.encode(outcome)))

    def outcomes(self, miner: int, deadline: int | None = None, limit: int = 96) -> list[DeadlineOutcome]:
        """The latest outcomes, newest first."""
        query, args = "SELECT body FROM outcomes WHERE miner = ?", (miner,)
        if deadline is not None:
            query, args = query + " AND deadline = ?", args + (deadline,)
        rows = self.db.execute(query + " ORDER BY open DESC LIMIT ?", args + (limit,))
        return [self.decoded(_outcome, b, "a deadline outcome") for (b,) in rows]

    def prune(self, before_open: int) -> None:
        """Forget proofs and messages of deadlines that opened before `before_open`."""
        with self.transaction():
            self.db.execute("DELETE FROM proofs WHERE open < ?", (before_open,))
            self.db.execute("DELETE FROM messages WHERE open < ?", (before_open,))
