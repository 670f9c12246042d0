"""MessageSender, the one way a node sends messages: the pool assigns nonces (two nodes on
one address share its sequence), and a send repeated after a crash or a lost answer is
the same message."""
import pytest
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.peer import CallTimeout
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import MessageSender
from zqnode.nodes.chain.core import NotFound
from zqnode.nodes.chain.messages import MessageError
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.sqlite_store import SqliteStore


class Pool:
    """The chain node's push over an in-memory chain; `lose` answers the next push with a
    timeout after pooling it (the answer was lost)."""
    def __init__(self):
        self.chain = ChainDriver("devnet").chain
        self.lose = False

    async def push(self, msg, uuid=""):
        await trio.sleep(0)
        try:
            pooled = self.chain.push(msg, uuid)
        except (MessageError, NotFound) as e:
            raise RemoteError("invalid", str(e)) from None
        if self.lose:
            self.lose = False
            raise CallTimeout("no answer")
        return pooled


class Store(SqliteStore):
    schema = "CREATE TABLE IF NOT EXISTS sent (msg_id TEXT PRIMARY KEY, nonce INTEGER NOT NULL);"

    def record(self, msg):
        self.db.execute("INSERT INTO sent VALUES (?, ?)", (msg.id, msg.nonce))

    def rows(self):
        return self.db.execute("SELECT msg_id, nonce FROM sent ORDER BY nonce").fetchall()


def faults(*sectors):
    return M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[
        M.SectorDeclaration(deadline=0, partition=0, sectors=list(sectors))]))


async def test_a_lost_answer_then_a_restart_sends_nothing_twice(tmp_path):
    pool, store = Pool(), Store(tmp_path / "a.sqlite")
    pool.lose = True
    with pytest.raises(CallTimeout):
        await MessageSender(pool, store).send(faults(1), "faults 1", store.record)
    assert store.rows() == [] and len(pool.chain.pool) == 1
    store.close()
    store = Store(tmp_path / "a.sqlite")                          # the node restarted
    sent = await MessageSender(pool, store).send(faults(1), "faults 1", store.record)
    assert len(pool.chain.pool) == 1 and store.rows() == [(sent.id, 0)]
    # finished: the next send under that name is a new message
    again = await MessageSender(pool, store).send(faults(1), "faults 1", store.record)
    assert again.id != sent.id and again.nonce == 1


async def test_another_message_under_the_same_name_is_not_taken_for_the_unfinished_one(tmp_path):
    pool, store = Pool(), Store(tmp_path / "a.sqlite")
    pool.lose = True
    with pytest.raises(CallTimeout):
        await MessageSender(pool, store).send(faults(1), "faults", store.record)
    other = await MessageSender(pool, store).send(faults(2), "faults", store.record)
    assert other.nonce == 1 and store.rows() == [(other.id, 1)]


async def test_a_refused_message_is_not_recorded_and_the_next_try_is_new(tmp_path):
    pool, store = Pool(), Store(tmp_path / "a.sqlite")
    sender = MessageSender(pool, store)
    bad = M.Message.call("t0100", 999, M.DeclareFaultsParams(faults=[]))
    with pytest.raises(RemoteError, match="no actor f0999"):
        await sender.send(bad, "x", store.record)
    assert store.rows() == [] and store.db.execute("SELECT count(*) FROM sends").fetchone() == (0,)


async def test_two_nodes_sending_from_one_address_share_its_nonces(tmp_path):
    pool = Pool()
    manager, poster = Store(tmp_path / "m.sqlite"), Store(tmp_path / "p.sqlite")
    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(MessageSender(pool, manager).send, faults(i), f"m{i}", manager.record)
            n.start_soon(MessageSender(pool, poster).send, faults(10 + i), f"p{i}", poster.record)
    nonces = sorted(nonce for _, nonce in manager.rows() + poster.rows())
    assert nonces == list(range(10)) and len(pool.chain.pool) == 10


async def test_an_outcome_the_chain_does_not_know_keeps_the_send_the_same_message(tmp_path):
    # the chain-watcher's answer when its Lotus node dropped during MpoolPushMessage:
    # the message may be pooled, so the next try goes under the same uuid
    pool, store = Pool(), Store(tmp_path / "a.sqlite")
    real_push, uuids = pool.push, []

    async def unknown_once(msg, uuid=""):
        uuids.append(uuid)
        pooled = await real_push(msg, uuid)
        if len(uuids) == 1:
            raise RemoteError("busy", "the message may be in its pool", retry=True)
        return pooled
    pool.push = unknown_once
    with pytest.raises(RemoteError, match="may be in its pool"):
        await MessageSender(pool, store).send(faults(1), "faults 1", store.record)
    sent = await MessageSender(pool, store).send(faults(1), "faults 1", store.record)
    assert uuids[0] == uuids[1] and len(pool.chain.pool) == 1 and store.rows() == [(sent.id, 0)]
