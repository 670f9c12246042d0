"""The chain node over the in-memory bus under a mock clock: tipsets on a timer, events,
the RPC through BusChainAPI, wait() across reorgs, persistence and restarts."""
import itertools
import sqlite3

import msgspec
import pytest
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.wire import chain as W
from zqnode.nodes.chain.api import BusChainAPI, MessageUnknown
from zqnode.nodes.chain.core import Genesis
from zqnode.nodes.chain.node import PUBLISHED_HEAD, ChainConfig, ChainNode, ChainRollback
from zqnode.nodes.chain.randomness import DomainTag, address_entropy, draw
from zqnode.nodes.chain.testing import comm_d_of, comm_r_of
from zqnode.nodes.chain.verifiers import fake_seal_proof, fake_window_post_proof
from zqnode.nodes.identity import NodeIdentity
from zqnode.proofs import cid as cids

_names = itertools.count()


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://chain-{next(_names)}")).run)


def chain_node(bus: str, repo, **kw) -> ChainNode:
    me = NodeIdentity(name="chain-1", repo=str(repo), bus=BusConfig(address=bus))
    return ChainNode(me, ChainConfig(verifier="fake", **kw), clock=trio.current_time)


async def client(nursery, bus: str, name: str = "sealer") -> BusChainAPI:
    # the chain's clients here push messages and reorg: a manager's work and an operator's
    peer = Peer(name=f"{name}-{next(_names)}", role="admin", cfg=BusConfig(address=bus))
    await nursery.start(peer.run)
    return BusChainAPI(peer)


async def next_update(updates):
    return await updates.__anext__()


def precommit(sector: int, ticket_epoch: int) -> M.Message:
    return M.Message.call("t0100", 1000, M.PreCommitSectorParams(
        sector_number=sector, seal_proof=5, sealed_cid=cids.sealed_cid(comm_r_of(1000, sector)),
        unsealed_cid=cids.piece_cid_v1(comm_d_of(1000, sector)), seal_rand_epoch=ticket_epoch))


async def test_a_tipset_every_epoch_published_on_chain_head(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    async with api.notify() as updates:
        first = await next_update(updates)
        assert first.current and first.reverted == []
        seen = [(first.head.epoch, trio.current_time())]
        for _ in range(3):
            u = await next_update(updates)
            assert not u.current and u.reverted == [] and len(u.applied) == 1
            assert u.head.parent == (await api.tipset(u.head.epoch - 1)).key
            seen.append((u.head.epoch, trio.current_time()))
    epochs = [e for e, _ in seen]
    assert epochs == list(range(epochs[0], epochs[0] + 4))
    gaps = {round(b - a, 6) for (_, a), (_, b) in zip(seen, seen[1:])}
    assert gaps == {1.0}                                       # the devnet's epoch
    info = await api.info()
    assert (info.network, info.epoch_seconds, info.finality, info.miners) == ("devnet", 1.0, 5, [1000])
    assert info.genesis == (await api.tipset(0)).key and info.reorg_allowed


async def test_push_lookup_wait_and_refusals(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    await trio.sleep(3.5)
    msg_id = (await api.push(precommit(1, ticket_epoch=1))).id
    assert (await api.lookup(msg_id)).status == "pending"
    assert await api.nonce("t0100") == 1
    look = await api.wait(msg_id, confidence=2)
    assert look.status == "landed" and look.receipt.exit_code == 0
    assert look.head - look.epoch >= 2
    pc = await api.precommit(1000, 1)
    assert (pc.precommit_epoch, pc.seal_rand_epoch, pc.comm_r) == (look.epoch, 1, comm_r_of(1000, 1))
    # what the pool refuses is a typed error naming the problem
    with pytest.raises(RemoteError, match="wrong nonce 0 for t0100: expected 1") as e:
        await api.push(msgspec.structs.replace(precommit(2, 1), nonce=0))
    assert e.value.code == "invalid"
    with pytest.raises(RemoteError, match="unknown method 'Burn'"):
        await api.push(M.Message(sender="t0100", to=1000, method="Burn", params=b""))
    with pytest.raises(MessageUnknown, match="knows no message 00"):
        await api.wait("00" * 32, 1)
    # a dry run changes nothing
    r = await api.simulate(precommit(1, ticket_epoch=1))
    assert (r.exit_code, r.error) == (16, "sector number 1 already allocated")
    assert await api.nonce("t0100") == 1


async def test_wait_follows_a_reorg_that_reverts_the_message(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    await trio.sleep(3.5)
    msg_id = (await api.push(precommit(1, ticket_epoch=1))).id
    result = {}

    async def waiter():
        result["look"] = await api.wait(msg_id, confidence=3)
    nursery.start_soon(waiter)
    async with api.notify() as updates:
        while True:
            u = await next_update(updates)
            if msg_id in u.head.messages:
                break
        landed_at = u.head.epoch
        reorged = await api.reorg(2)                      # reverts the message's tipset
        assert [t.epoch for t in reorged.reverted] == [landed_at, landed_at - 1]
        assert [t.epoch for t in reorged.applied] == [landed_at - 1, landed_at]
        u = await next_update(updates)
        assert [t.key for t in u.reverted] == [t.key for t in reorged.reverted]
        assert (await api.lookup(msg_id)).status == "pending"
    while "look" not in result:
        await trio.sleep(1)
    look = result["look"]
    assert look.epoch == landed_at + 1 and look.confirmations >= 3
    assert (await api.tipset(look.epoch)).key == look.tipset


async def test_state_queries_and_randomness(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    await trio.sleep(4.5)
    ts = await api.tipset(3)
    ent = address_entropy(1000)
    assert await api.randomness(DomainTag.SealRandomness, 3, ent) == draw(ts.ticket, 5, 3, ent)
    assert await api.randomness(DomainTag.WindowedPoStChallengeSeed, 3, ent) == draw(ts.beacon, 4, 3, ent)
    assert await api.randomness(4, 3, ent, source="tickets") == draw(ts.ticket, 4, 3, ent)
    (m,) = await api.miners()
    assert m == await api.miner(1000)
    assert (m.actor_id, m.worker, m.sector_size, m.power, m.deadline.index) == (
        1000, "t0100", 2048, 0, (await api.deadline(1000)).index)
    assert (await api.deadline(1000, epoch=0)) == node.chain.deadline(1000, 0)
    dv = await api.partitions(1000, 5)
    assert (dv.index, dv.partitions, dv.posted) == (5, [], [])
    assert await api.sector(1000, 1) is None and await api.precommit(1000, 1) is None
    for call, code, text in [
        (api.miner(1234), "not_found", "no miner f01234"),
        (api.tipset(99), "not_found", "no tipset at epoch 99"),
        (api.partitions(1000, 48), "not_found", "no deadline 48"),
        (api.randomness(5, 99), "invalid", "epoch 99 is after the head"),
        (api.randomness(77, 1), "invalid", "unknown domain separation tag 77"),
        (api.reorg(0), "invalid", r"reorg depth must be in 1\.\.4 \(finality 5, head 4\), got 0"),
    ]:
        with pytest.raises(RemoteError, match=text) as e:
            await call
        assert e.value.code == code


async def test_reorg_is_refused_where_not_allowed(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path, allow_reorg=False)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    await trio.sleep(3.5)
    with pytest.raises(RemoteError, match="reorg is not allowed on this devnet chain") as e:
        await api.reorg(1)
    assert e.value.code == "permission" and not (await api.info()).reorg_allowed


async def test_mainnet_policy_chain_refuses_reorg_by_default(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path, genesis=Genesis(network="mainnet"))
    await nursery.start(node.run)
    api = await client(nursery, bus)
    info = await api.info()
    assert (info.network, info.epoch_seconds, info.reorg_allowed) == ("mainnet", 30, False)
    with pytest.raises(RemoteError, match="not allowed on this mainnet chain"):
        await api.reorg(1)


async def test_a_restart_continues_at_the_same_head_from_sqlite(bus, nursery, tmp_path, autojump_clock):
    api = await client(nursery, bus)
    async with trio.open_nursery() as run1:
        node = chain_node(bus, tmp_path)
        await run1.start(node.run)
        await trio.sleep(3.5)
        landed = (await api.push(precommit(1, ticket_epoch=1))).id
        await api.wait(landed, confidence=0)
        await api.reorg(1)                                   # `landed` goes back to the pool
        pending = (await api.push(precommit(2, ticket_epoch=1))).id   # not in a tipset yet
        before = await api.info()
        run1.cancel_scope.cancel()
    db = sqlite3.connect(tmp_path / "chain.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT count(*) FROM tipsets").fetchone() == (before.head.epoch + 1,)
    db.close()

    async with trio.open_nursery() as run2:
        node = chain_node(bus, tmp_path)
        again = node.open()
        assert again.head.key == before.head.key and again.fork == before.fork == 1
        assert list(again.pool) == [landed, pending]
        async with api.notify() as updates:
            await run2.start(node.run)
            u = await next_update(updates)                   # the snapshot, then the restart's event
            while u.head.epoch == before.head.epoch:
                u = await next_update(updates)
            assert (u.head.epoch, u.head.parent) == (before.head.epoch + 1, before.head.key)
            assert u.head.messages == [landed, pending]
        assert (await api.lookup(landed)).epoch == before.head.epoch + 1
        assert (await api.precommit(1000, 2)) is not None
        run2.cancel_scope.cancel()

    other = chain_node(bus, tmp_path, genesis=Genesis(seed="another"))
    with pytest.raises(ValueError, match="holds another chain"):
        other.open()


async def test_seal_and_prove_a_sector_through_the_api(bus, nursery, tmp_path, autojump_clock):
    """The path the sealing state machine and the poster take, with fake proofs."""
    node = chain_node(bus, tmp_path)
    await nursery.start(node.run)
    api = await client(nursery, bus)
    ent = address_entropy(1000)
    await trio.sleep(3.5)
    head = await api.head()
    ticket_epoch = head.epoch - 2
    look = await api.wait((await api.push(precommit(1, ticket_epoch))).id, confidence=0)
    assert look.receipt.exit_code == 0
    pc = await api.precommit(1000, 1)
    while (await api.head()).epoch < pc.seed_epoch:
        await trio.sleep(1)
    proof = fake_seal_proof(seal_proof=5, miner=1000, sector=1,
                            ticket=await api.randomness(DomainTag.SealRandomness, ticket_epoch, ent),
                            seed=await api.randomness(DomainTag.InteractiveSealChallengeSeed,
                                                      pc.seed_epoch, ent),
                            comm_d=pc.comm_d, comm_r=pc.comm_r)
    look = await api.wait((await api.push(M.Message.call("t0100", 1000, M.ProveCommitSectorParams(
        sector_number=1, proof=proof)))).id, confidence=0)
    assert look.receipt.exit_code == 0, look.receipt.error
    loc = msgspec.msgpack.decode(look.receipt.return_value, type=M.SectorLocation)
    sector = await api.sector(1000, 1)
    assert (sector.state, sector.deadline, sector.partition) == ("unproven", loc.deadline, loc.partition)
    # the poster's part: wait for the deadline to open, prove the partition
    while (di := await api.deadline(1000)).index != loc.deadline:
        await trio.sleep(di.close - (await api.head()).epoch)
    rand = await api.randomness(DomainTag.WindowedPoStChallengeSeed, di.challenge, ent)
    part = (await api.partitions(1000, loc.deadline)).partitions[loc.partition]
    commit = (await api.head()).epoch
    params = M.SubmitWindowedPoStParams(
        deadline=di.index, partitions=[M.PoStPartition(index=loc.partition)],
        proofs=[fake_window_post_proof(seal_proof=5, randomness=rand,
                                       sectors=[(n, comm_r_of(1000, n)) for n in part.sectors])],
        chain_commit_epoch=commit, chain_commit_rand=await api.randomness(DomainTag.PoStChainCommit, commit))
    look = await api.wait((await api.push(M.Message.call("t0100", 1000, params))).id, confidence=0)
    assert look.receipt.exit_code == 0, look.receipt.error
    m = await api.miner(1000)
    assert (m.power, m.active) == (2048, 1)
    assert (await api.sector(1000, 1)).state == "active"


class _Sub:
    """A subscription's events, from a list."""

    def __init__(self, events):
        self.events = list(events)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.events:
            raise StopAsyncIteration
        return self.events.pop(0)


class _Event:
    def __init__(self, reverted=(), applied=(), gap=0, reset=False):
        self.body = W.ChainHeadChanged(reverted=list(reverted), applied=list(applied))
        self.gap, self.reset = gap, reset


def ts(epoch: int, key: str) -> M.TipsetSummary:
    return M.TipsetSummary(epoch=epoch, key=key, parent="", timestamp=0.0, ticket=b"", beacon=b"")


async def test_notify_starts_from_a_snapshot_and_drops_what_it_already_shows():
    heads = [ts(4, "d"), ts(9, "i")]

    class Api(BusChainAPI):
        async def head(self):
            return heads.pop(0)
    events = [_Event(applied=[ts(3, "c")]),                       # before the snapshot
              _Event(applied=[ts(4, "d")]),                       # the snapshot itself
              _Event(applied=[ts(5, "e")]),
              _Event(reverted=[ts(5, "e"), ts(4, "d")], applied=[ts(4, "d2"), ts(5, "e2")]),
              _Event(applied=[ts(8, "h")], gap=2),                # missed some: a new snapshot
              _Event(applied=[ts(10, "j")])]
    got = [u async for u in Api(peer=None)._updates(_Sub(events))]
    assert [(u.current, [t.key for t in u.reverted], [t.key for t in u.applied]) for u in got] == [
        (True, [], ["d"]), (False, [], ["e"]), (False, ["e", "d"], ["d2", "e2"]),
        (True, [], ["i"]), (False, [], ["j"])]


async def test_a_database_below_a_published_head_stops_the_start_unless_told(
        bus, nursery, tmp_path, autojump_clock, caplog):
    async with trio.open_nursery() as run1:
        await run1.start(chain_node(bus, tmp_path).run)
        await trio.sleep(5.5)
        run1.cancel_scope.cancel()
    published = int((tmp_path / PUBLISHED_HEAD).read_text())
    assert published >= 5
    db = sqlite3.connect(tmp_path / "chain.sqlite")           # its last changes lost
    db.execute("DELETE FROM tipsets WHERE epoch > 2")
    db.commit()
    db.close()
    with pytest.raises(ChainRollback, match=f"is at epoch 2, below epoch {published} that this "
                                            "chain already published.*allow_rollback = true"):
        chain_node(bus, tmp_path).open()
    node = chain_node(bus, tmp_path, allow_rollback=True)      # the operator's word
    assert node.open().head.epoch == 2
    assert any(f"below epoch {published}" in r.getMessage() and r.levelname == "ERROR"
               for r in caplog.records)
    assert int((tmp_path / PUBLISHED_HEAD).read_text()) == 2
    assert "below epoch" in node.peer.capabilities["problems"]["rollback"]   # zqnode status shows it
    node.store.close()
    chain_node(bus, tmp_path).open().head          # from here on, without the flag


async def test_a_uuid_pushed_again_after_a_restart_of_the_chain_is_the_same_message(
        bus, nursery, tmp_path, autojump_clock):
    api = await client(nursery, bus)
    async with trio.open_nursery() as run1:
        await run1.start(chain_node(bus, tmp_path).run)
        first = await api.push(precommit(1, ticket_epoch=1), uuid="sector-1-precommit")
        run1.cancel_scope.cancel()
    async with trio.open_nursery() as run2:
        await run2.start(chain_node(bus, tmp_path).run)
        again = await api.push(precommit(1, ticket_epoch=1), uuid="sector-1-precommit")
        assert again == first and (await api.info()).pool == 1
        run2.cancel_scope.cancel()


async def test_funds_are_added_by_an_admin_on_a_devnet_and_kept_across_a_restart(
        bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path)
    with trio.CancelScope() as scope:
        await nursery.start(node.run)
        api = await client(nursery, bus)
        assert (await api.fund("t0100", 5)).balance == 1000 * 10 ** 9 + 5
        peer = Peer(name="reader-1", role="reader", cfg=BusConfig(address=bus))
        await nursery.start(peer.run)
        with pytest.raises(RemoteError) as e:
            await BusChainAPI(peer).fund("t0100", 5)
        assert e.value.code == "permission"
        assert (await api.miner(1000)).accounts["t0100"] == 1000 * 10 ** 9 + 5
        scope.cancel()
    again = chain_node(bus, tmp_path)
    again.open()
    assert again.chain.balance("t0100") == 1000 * 10 ** 9 + 5
    again.store.close()


async def test_a_mainnet_policy_chain_refuses_funding(bus, nursery, tmp_path, autojump_clock):
    node = chain_node(bus, tmp_path, genesis=Genesis(network="mainnet"))
    await nursery.start(node.run)
    api = await client(nursery, bus)
    with pytest.raises(RemoteError, match="funds are added on a devnet only") as e:
        await api.fund("t0100", 5)
    assert e.value.code == "permission"
