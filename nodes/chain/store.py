"""The chain's SQLite file (WAL): every tipset, the state after each of the last
finality epochs, the message pool and the fork counter. Each head change and each pushed
message is one transaction, committed before anyone hears of it."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain.core import Chain, ChainState, Genesis, HeadChange
from zqnode.nodes.chain.messages import Message, Tipset
from zqnode.nodes.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tipsets (epoch INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS states (epoch INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pool (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sent (uuid TEXT PRIMARY KEY, id TEXT NOT NULL);
"""

_enc = msgspec.msgpack.Encoder()
_tipset = msgspec.msgpack.Decoder(Tipset)
_message = msgspec.msgpack.Decoder(Message)
_genesis = msgspec.msgpack.Decoder(Genesis)
_state = msgspec.msgpack.Decoder(ChainState)


class ChainStore(SqliteStore):
    schema = SCHEMA
    synchronous = "NORMAL"

    def genesis(self) -> Genesis | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = 'genesis'").fetchone()
        return None if row is None else self.decoded(_genesis, row[0], "the genesis")

    def create(self, chain: Chain) -> None:
        """Record a new chain (its genesis tipset and state)."""
        with self.transaction():
            self.db.execute("INSERT INTO meta VALUES ('genesis', ?)", (_enc.encode(chain.genesis),))
            self.db.execute("INSERT INTO meta VALUES ('fork', ?)", (_enc.encode(chain.fork),))
            self._insert(chain, chain.tipsets)

    def tipsets(self) -> list[Tipset]:
        """Every tipset from genesis to the head."""
        return [self.decoded(_tipset, b, "a tipset") for (b,) in self.db.execute(
            "SELECT body FROM tipsets ORDER BY epoch")]

    def head_state(self) -> tuple[int, ChainState]:
        """The head epoch and the state after it (without loading the whole chain)."""
        epoch, body = self.db.execute("SELECT epoch, body FROM states ORDER BY epoch DESC LIMIT 1").fetchone()
        return epoch, self.decoded(_state, body, f"the state at epoch {epoch}")

    def load(self, chain_genesis: Genesis, verifiers) -> Chain:
        tipsets = self.tipsets()
        states = dict(self.db.execute("SELECT epoch, body FROM states"))
        pool = [self.decoded(_message, b, "a pooled message")
                for (b,) in self.db.execute("SELECT body FROM pool ORDER BY seq")]
        fork = self.decoded(msgspec.msgpack, self.db.execute("SELECT v FROM meta WHERE k = 'fork'").fetchone()[0],
                            "the fork counter")
        sent = dict(self.db.execute("SELECT uuid, id FROM sent"))
        return Chain.restore(chain_genesis, verifiers, tipsets=tipsets, states=states, pool=pool,
                             fork=fork, sent=sent)

    def save_change(self, chain: Chain, change: HeadChange) -> None:
        with self.transaction():
            if change.reverted:
                first = min(t.epoch for t in change.reverted)
                self.db.execute("DELETE FROM tipsets WHERE epoch >= ?", (first,))
                self.db.execute("DELETE FROM states WHERE epoch >= ?", (first,))
            self._insert(chain, change.applied)
            self.db.execute("DELETE FROM states WHERE epoch < ?",
                            (chain.head.epoch - chain.policy.chain_finality,))
            self.db.execute("UPDATE meta SET v = ? WHERE k = 'fork'", (_enc.encode(chain.fork),))
            self.db.execute("DELETE FROM pool")
            self.db.executemany("INSERT INTO pool (id, body) VALUES (?, ?)",
                                [(i, _enc.encode(m)) for i, m in chain.pool.items()])

    def save_state(self, chain: Chain) -> None:
        """The head's state, changed between tipsets (devnet funding)."""
        with self.transaction():
            self.db.execute("UPDATE states SET body = ? WHERE epoch = ?",
                            (chain.state_blob(chain.head.epoch), chain.head.epoch))

    def add_message(self, msg: Message, uuid: str = "") -> None:
        with self.transaction():
            self.db.execute("INSERT INTO pool (id, body) VALUES (?, ?)", (msg.id, _enc.encode(msg)))
            if uuid:
                self.db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?)", (uuid, msg.id))

    def _insert(self, chain: Chain, tipsets: list[Tipset]) -> None:
        self.db.executemany("INSERT INTO tipsets VALUES (?, ?)",
                            [(t.epoch, _enc.encode(t)) for t in tipsets])
        self.db.executemany("INSERT INTO states VALUES (?, ?)",
                            [(t.epoch, chain.state_blob(t.epoch)) for t in tipsets])
