"""The chain core: tipsets, the pool, receipts, lookups, randomness, reorgs, restore."""
import msgspec
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import Chain, Genesis, MinerSpec, ReorgError
from zqnode.nodes.chain.messages import ExitCode, Message, MessageError
from zqnode.nodes.chain.policy import DEVNET, MAINNET
from zqnode.nodes.chain.randomness import DomainTag, RandomnessError, address_entropy, draw
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.chain.verifiers import FAKE

NETWORKS = ["devnet", "mainnet"]


def declare(sectors=(1,), deadline=0, partition=0):
    return M.DeclareFaultsParams(faults=[M.SectorDeclaration(deadline=deadline, partition=partition,
                                                             sectors=list(sectors))])


@pytest.mark.parametrize("network", NETWORKS)
def test_one_tipset_per_produce_linked_to_its_parent(network):
    c = Chain(Genesis(network=network, seed="s"), FAKE)
    g = c.head
    assert (g.epoch, g.parent, g.messages) == (0, "", [])
    changes = c.advance(3, timestamp=7.0)
    assert [ch.applied[0].epoch for ch in changes] == [1, 2, 3]
    assert all(ch.reverted == [] for ch in changes)
    ts = c.tipsets
    assert [t.parent for t in ts[1:]] == [t.key for t in ts[:-1]]
    assert len({t.key for t in ts}) == 4 and ts[3].timestamp == 7.0
    # the same genesis gives the same chain; another seed another one
    same = Chain(Genesis(network=network, seed="s"), FAKE)
    same.advance(3)
    assert [t.key for t in same.tipsets] == [t.key for t in ts]
    other = Chain(Genesis(network=network, seed="t"), FAKE)
    assert other.head.key != g.key


def test_a_uuid_pushed_again_is_the_same_message_and_survives_a_restore():
    d = ChainDriver("devnet")
    c = d.chain
    first = c.push(Message.call("t0100", 1000, declare()), uuid="u1")
    assert c.push(Message.call("t0100", 1000, declare()), uuid="u1") == first       # a retry
    other = c.push(Message.call("t0100", 1000, declare()), uuid="u2")
    assert (first.nonce, other.nonce, len(c.pool)) == (0, 1, 2)
    c.produce(1.0)
    assert c.push(Message.call("t0100", 1000, declare()), uuid="u1") == first       # landed
    with pytest.raises(MessageError, match="at most 64 characters"):
        c.push(Message.call("t0100", 1000, declare()), uuid="u" * 65)
    again = Chain.restore(c.genesis, FAKE, tipsets=c.tipsets, states={c.head.epoch: c.state_blob(c.head.epoch)},
                          pool=[], fork=c.fork, sent=c.sent)
    assert again.push(Message.call("t0100", 1000, declare()), uuid="u2") == other


@pytest.mark.parametrize("network", NETWORKS)
def test_push_assigns_and_checks_nonces_and_the_next_tipset_includes_them(network):
    d = ChainDriver(network)
    c = d.chain
    c.fund("t0999", 10 ** 9)
    first = c.push(Message.call("t0100", 1000, declare()))
    assert first.nonce == 0 and c.next_nonce("t0100") == 1
    second = c.push(Message.call("t0100", 1000, declare(), nonce=1))
    for bad_nonce in (0, 5):
        with pytest.raises(MessageError, match=f"wrong nonce {bad_nonce} for t0100: expected 2"):
            c.push(Message.call("t0100", 1000, declare(), nonce=bad_nonce))
    other = c.push(Message.call("t0999", 1000, declare()))       # its own sequence
    assert other.nonce == 0
    assert [m.id for m in c.pool.values()] == [first.id, second.id, other.id]
    assert c.lookup(first.id).status == "pending"
    ts = c.produce(1.0).applied[0]
    assert [m.id for m in ts.messages] == [first.id, second.id, other.id]
    assert c.pool == {} and c.state.nonces == {"t0100": 2, "t0999": 1}
    # executed: a fault declaration for a partition that does not exist, and a sender
    # that is not the worker
    assert [r.exit_code for r in ts.receipts] == [ExitCode.USR_NOT_FOUND] * 2 + [ExitCode.USR_FORBIDDEN]
    assert ts.receipts[0].error == "no partition 0 in deadline 0"
    assert ts.receipts[2].error == "sender t0999 is not the worker (t0100) of miner f01000"
    look = c.lookup(second.id)
    assert (look.status, look.epoch, look.tipset, look.head) == ("landed", 1, ts.key, 1)
    assert look.receipt == ts.receipts[1] and look.confirmations == 0
    c.advance(2)
    assert c.lookup(second.id).confirmations == 2
    assert c.next_nonce("t0100") == 2 and c.message(second.id) == second


def test_the_pool_refuses_bad_messages_and_changes_nothing():
    c = ChainDriver().chain
    good = M.encode(declare())
    cases = [
        (Message(sender="t0100", to=1000, method="Burn", params=good), "unknown method 'Burn'"),
        (Message(sender="t0100", to=1000, method="DeclareFaults", params=b"\x01"),
         "bad parameters for DeclareFaults"),
        (Message(sender="t0100", to=1000, method="DeclareFaults",
                 params=M.encode({"faults": [{"deadline": "x"}]})), "bad parameters for DeclareFaults"),
        (Message(sender="t0100", to=1001, method="DeclareFaults", params=good),
         "no actor f01001"),
        (Message(sender="", to=1000, method="DeclareFaults", params=good), "no sender"),
    ]
    for msg, err in cases:
        with pytest.raises(MessageError, match=err):
            c.push(msg)
    assert c.pool == {} and c.next_nonce("t0100") == 0
    with pytest.raises(MessageError, match="not a miner method"):
        Message.call("t0100", 1000, M.SectorLocation(deadline=0, partition=0))
    assert c.lookup("00" * 32).status == "unknown"


@pytest.mark.parametrize("network", NETWORKS)
def test_randomness_is_deterministic_per_chain_and_source(network):
    a, b = ChainDriver(network, seed="x").chain, ChainDriver(network, seed="x").chain
    a.advance(5)
    b.advance(5)
    ent = address_entropy(1000)
    for tag in (DomainTag.SealRandomness, DomainTag.InteractiveSealChallengeSeed):
        assert a.randomness(tag, 3, ent) == b.randomness(tag, 3, ent)
    # ticket randomness comes from the tipset's ticket, beacon randomness from its beacon
    ts = a.tipsets[3]
    assert a.randomness(5, 3, ent) == draw(ts.ticket, 5, 3, ent)
    assert a.randomness(6, 3, ent) == draw(ts.beacon, 6, 3, ent)
    assert a.randomness(6, 3, ent, source="tickets") == draw(ts.ticket, 6, 3, ent)
    assert a.randomness(4, -2) == draw(a.tipsets[0].beacon, 4, -2)
    with pytest.raises(RandomnessError, match="epoch 6 is after the head"):
        a.randomness(5, 6)
    with pytest.raises(RandomnessError, match="unknown randomness source"):
        a.randomness(5, 1, source="drand")
    c = ChainDriver(network, seed="y").chain
    c.advance(5)
    assert c.randomness(5, 3, ent) != a.randomness(5, 3, ent)


@pytest.mark.parametrize("network", NETWORKS)
def test_reorg_reverts_tipsets_returns_messages_and_changes_randomness(network):
    d = ChainDriver(network)
    c = d.chain
    b = c.policy.seal_randomness_lookback + 10       # a ticket old enough exists
    d.step(b)
    before = list(c.tipsets)
    pre = d.send(1000, d.precommit_params(1000, 7))
    d.step()
    assert c.precommit(1000, 7) is not None and c.lookup(pre).epoch == b + 1
    later = d.send(1000, declare())
    d.step()
    assert c.lookup(later).epoch == b + 2
    rand = {e: c.randomness(DomainTag.WindowedPoStChallengeSeed, e, b"") for e in range(b + 3)}
    tick = {e: c.randomness(DomainTag.SealRandomness, e, b"") for e in range(b + 3)}

    ch = c.reorg(3, timestamp=9.0)                     # replaces b, b + 1, b + 2
    assert [t.epoch for t in ch.reverted] == [b + 2, b + 1, b]
    assert [t.epoch for t in ch.applied] == [b, b + 1, b + 2]
    assert ch.applied[0].parent == before[b - 1].key
    assert all(t.messages == [] and t.timestamp == 9.0 for t in ch.applied)
    assert {t.key for t in ch.applied}.isdisjoint({t.key for t in before})
    assert c.tipsets[:b] == before[:b]
    # the messages are back in the pool, in order, and the state is as before them
    assert list(c.pool) == [pre, later]
    assert c.lookup(pre).status == "pending" and c.precommit(1000, 7) is None
    assert c.next_nonce("t0100") == 2 and c.state.nonces == {}
    # replaced epochs draw new randomness, older ones keep theirs
    for e in range(b + 3):
        same = e < b
        assert (c.randomness(DomainTag.WindowedPoStChallengeSeed, e, b"") == rand[e]) is same
        assert (c.randomness(DomainTag.SealRandomness, e, b"") == tick[e]) is same
    # the pool's messages land in the next tipset
    d.step()
    look = c.lookup(pre)
    assert (look.status, look.epoch, look.receipt.exit_code) == ("landed", b + 3, 0)
    assert c.lookup(later).epoch == b + 3


def test_reorg_depth_is_bounded_by_finality_and_genesis():
    d = ChainDriver()
    with pytest.raises(ReorgError, match=r"reorg depth must be in 1\.\.0"):
        d.chain.reorg(1, 0.0)
    d.step(DEVNET.chain_finality + 3)
    for bad in (0, DEVNET.chain_finality + 1, True):
        with pytest.raises(ReorgError, match=f"1..{DEVNET.chain_finality}"):
            d.chain.reorg(bad, 0.0)
    head = d.chain.head
    d.chain.reorg(DEVNET.chain_finality, 0.0)
    assert d.chain.head.epoch == head.epoch and d.chain.head.key != head.key


def test_a_reorg_past_the_seed_epoch_breaks_the_seal_proof_made_before_it():
    d = ChainDriver()
    d.step(4)
    d.send(1000, d.precommit_params(1000, 1, ticket_epoch=2))
    d.step()
    pc = d.chain.precommit(1000, 1)
    assert (pc.precommit_epoch, pc.seed_epoch) == (5, 10)
    d.run_to(pc.seed_epoch)
    proof = d.porep(1000, 1)                      # made on this fork
    d.chain.reorg(3, 0.0)                         # replaces 8, 9, 10: the seed changes
    assert d.chain.precommit(1000, 1) == pc       # the pre-commit (epoch 5) stays
    r = d.receipt_after(d.send(1000, M.ProveCommitSectorParams(sector_number=1, proof=proof)))
    assert (r.exit_code, r.error) == (ExitCode.USR_ILLEGAL_ARGUMENT, "invalid seal proof for sector 1")
    r = d.receipt_after(d.send(1000, M.ProveCommitSectorParams(sector_number=1,
                                                               proof=d.porep(1000, 1))))
    assert r.exit_code == 0


@pytest.mark.parametrize("network", NETWORKS)
def test_restore_continues_exactly_where_the_chain_was(network):
    d = ChainDriver(network)
    c = d.chain
    d.seal(1000, 1)
    d.send(1000, declare())                        # pending
    fin = c.policy.chain_finality
    states = {e: c.state_blob(e) for e in range(max(0, c.head.epoch - fin), c.head.epoch + 1)}
    again = Chain.restore(c.genesis, FAKE, tipsets=list(c.tipsets), states=states,
                          pool=list(c.pool.values()), fork=c.fork)
    assert again.head == c.head and list(again.pool) == list(c.pool)
    assert msgspec.msgpack.encode(again.state) == msgspec.msgpack.encode(c.state)
    for chain in (c, again):
        chain.advance(5)
        chain.reorg(2, 0.0)
    assert [t.key for t in again.tipsets] == [t.key for t in c.tipsets]
    assert again.miner_view(1000) == c.miner_view(1000)
    with pytest.raises(ValueError, match="no persisted state for the head"):
        Chain.restore(c.genesis, FAKE, tipsets=list(c.tipsets), states={}, pool=[], fork=0)
    with pytest.raises(ValueError, match="contiguous"):
        Chain.restore(c.genesis, FAKE, tipsets=c.tipsets[1:], states=states, pool=[], fork=0)


def test_genesis_refuses_bad_miners():
    with pytest.raises(ValueError, match="names a miner twice"):
        Chain(Genesis(miners=[MinerSpec(), MinerSpec()]), FAKE)
    with pytest.raises(ValueError, match="unknown registered seal proof id 99"):
        Chain(Genesis(miners=[MinerSpec(seal_proof=99)]), FAKE)
    with pytest.raises(ValueError, match="unknown network policy"):
        Chain(Genesis(network="calibnet"), FAKE)

    assert Chain(Genesis(network="mainnet"), FAKE).policy == MAINNET


def test_a_uuid_pushed_with_another_message_is_refused():
    c = ChainDriver("devnet").chain
    first = c.push(Message.call("t0100", 1000, declare()), uuid="u1")
    with pytest.raises(MessageError, match=f"uuid 'u1' was pushed with another message \\({first.id}\\)"):
        c.push(Message.call("t0100", 1000, declare(sectors=(2,))), uuid="u1")
    assert list(c.pool) == [first.id]
