"""The miner actor on a running chain: every check and its refusal, deadlines and
partitions, WindowPoSt, faults, recoveries, penalties and power, on both policies."""
import copy

import msgspec
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain import miner as actor
from zqnode.nodes.chain.core import MinerSpec, Verifiers
from zqnode.nodes.chain.funds import FIL
from zqnode.nodes.chain.messages import ExitCode, MessageError
from zqnode.nodes.chain.policy import DEVNET, MAINNET, deadline_info
from zqnode.nodes.chain.randomness import DomainTag, address_entropy, blake2b256
from zqnode.nodes.chain.testing import ChainDriver, comm_d_of, comm_r_of
from zqnode.nodes.chain.verifiers import FAKE, _lazy, fake_seal_proof, fake_window_post_proof
from zqnode.proofs import cid as cids

SIZE = 2048                                     # 2 KiB sectors, 2 per partition


STRANGERS = ("t0101", "t0999")                 # funded accounts that are not the worker


def driver(network: str, **kw) -> ChainDriver:
    d = ChainDriver(network, **kw)
    for a in STRANGERS:
        d.chain.fund(a, FIL)
    return d


@pytest.fixture(params=["devnet", "mainnet"])
def d(request) -> ChainDriver:
    return driver(request.param)


@pytest.fixture
def dev() -> ChainDriver:
    return driver("devnet")


def run(d: ChainDriver, params, sender=None, miner=1000) -> M.Receipt:
    return d.receipt_after(d.send(miner, params, sender=sender))


def ok(d: ChainDriver, params) -> M.Receipt:
    r = run(d, params)
    assert r.exit_code == 0, r.error
    return r


def refused(d: ChainDriver, params, code: int, error: str, sender=None) -> None:
    without = copy.deepcopy(d.chain)           # the same tipset without the message
    without.advance(1)
    r = run(d, params, sender=sender)
    assert (r.exit_code, r.error) == (code, error)
    assert msgspec.msgpack.encode(d.chain.miner(1000)) == msgspec.msgpack.encode(without.miner(1000))


def would_refuse(d: ChainDriver, params, code: int, error: str, sender=None) -> None:
    """The receipt the message would get in the next tipset (nothing is produced)."""
    r = d.chain.simulate(M.Message.call(sender or "t0100", 1000, params))
    assert (r.exit_code, r.error) == (code, error)


def decl(deadline, partition, sectors):
    return [M.SectorDeclaration(deadline=deadline, partition=partition, sectors=sectors)]


def faults(deadline, partition, sectors):
    return M.DeclareFaultsParams(faults=decl(deadline, partition, sectors))


def recoveries(deadline, partition, sectors):
    return M.DeclareFaultsRecoveredParams(recoveries=decl(deadline, partition, sectors))


def view(d, n):
    return d.chain.sector(1000, n)


def sealed_pair(d: ChainDriver) -> int:
    """Sectors 1 and 2, sealed into one partition; returns their deadline."""
    a, b = d.seal(1000, 1), d.seal(1000, 2)
    assert (a.partition, b.partition) == (0, 0) and a.deadline == b.deadline
    return a.deadline


def prove_deadline(d: ChainDriver, dl: int, **kw) -> M.Receipt:
    d.run_to_open(1000, dl)
    return ok(d, d.post_params(1000, [0], **kw))


def run_past_close(d: ChainDriver, dl: int) -> None:
    """To the first epoch after deadline `dl` closes next."""
    di = d.chain.deadline(1000)
    if di.index != dl:
        d.run_to_open(1000, dl)
        di = d.chain.deadline(1000)
    d.run_to(di.close)


# -- PreCommitSector ------------------------------------------------------------------------

def test_precommit_records_the_sector_its_seed_and_prove_by_epochs(d):
    p = d.policy
    d.run_to(p.seal_randomness_lookback + 3)
    ok(d, d.precommit_params(1000, 5))
    e = d.epoch
    pc = d.chain.precommit(1000, 5)
    assert (pc.precommit_epoch, pc.seed_epoch, pc.prove_by) == (
        e, e + p.precommit_challenge_delay, e + p.max_prove_commit_duration)
    assert (pc.comm_r, pc.comm_d, pc.seal_rand_epoch) == (comm_r_of(1000, 5), comm_d_of(1000, 5),
                                                          e - p.seal_randomness_lookback)
    assert d.chain.miner_view(1000).precommits == 1 and d.chain.sector(1000, 5) is None


def test_precommit_refusals(d):
    p = d.policy
    d.run_to(p.seal_randomness_lookback + 3)
    ok(d, d.precommit_params(1000, 1))
    E = d.epoch + 1                                         # where the next message lands
    sealed, piece = cids.sealed_cid(b"\1" * 32), cids.piece_cid_v1(b"\2" * 32)
    v2 = cids.piece_cid_v2(b"\2" * 32, 100)
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    cases = [
        (dict(), ExitCode.USR_FORBIDDEN, "sender t0101 is not the worker (t0100) of miner f01000", "t0101"),
        (dict(seal_proof=6), I, "seal proof 6 does not match the miner's 5", None),
        (dict(sector_number=-1), I, "sector number -1 out of range 0..2^63-1", None),
        (dict(sector_number=1), I, "sector number 1 already allocated", None),
        (dict(sealed_cid=piece), I, f"bad sealed CID {piece!r}: sealed CID: expected codec "
                                    "0xf102, got 0xf101", None),
        (dict(sealed_cid="bafy"), I, "bad sealed CID 'bafy': not valid base32: 'bafy'", None),
        (dict(unsealed_cid=sealed), I, f"bad unsealed CID {sealed!r}: piece CID: expected codec "
                                       "0xf101, got 0xf102", None),
        (dict(unsealed_cid=v2), I, f"unsealed CID {v2!r} must be a piece CID v1 (CommD)", None),
        (dict(seal_rand_epoch=E - p.seal_randomness_lookback + 1), I,
         f"seal ticket epoch {E - p.seal_randomness_lookback + 1} too recent: must be at most "
         f"{E - p.seal_randomness_lookback} (epoch {E} - lookback {p.seal_randomness_lookback})", None),
        (dict(seal_rand_epoch=-1), I, f"seal ticket epoch -1 too old: must be at least 0 "
                                      f"(epoch {E} - max ticket age {p.max_ticket_age})", None),
    ]
    for override, code, error, sender in cases:
        would_refuse(d, d.precommit_params(1000, 2, **override), code, error, sender=sender)
    refused(d, d.precommit_params(1000, 2, seal_proof=6), I, "seal proof 6 does not match the miner's 5")
    assert sorted(d.chain.miner(1000).precommits) == [1]


def test_a_precommit_batch_precommits_every_sector_or_none(d):
    d.run_to(d.policy.seal_randomness_lookback + 3)
    batch = lambda *ps: M.PreCommitSectorBatch2Params(sectors=list(ps))
    ok(d, batch(d.precommit_params(1000, 1), d.precommit_params(1000, 2)))
    assert sorted(d.chain.miner(1000).precommits) == [1, 2]
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    refused(d, batch(d.precommit_params(1000, 3), d.precommit_params(1000, 2)), I,
            "sector number 2 already allocated")                    # one refusal refuses all
    refused(d, batch(), I, "batch empty")
    with pytest.raises(MessageError, match=r"length <= 256"):          # refused by the pool
        d.send(1000, batch(*[d.precommit_params(1000, n) for n in range(3, 260)]))
    refused(d, batch(d.precommit_params(1000, 3), d.precommit_params(1000, 3)), I,
            "batch names a sector twice: [3]")
    assert sorted(d.chain.miner(1000).precommits) == [1, 2]


def test_precommit_ticket_older_than_the_max_ticket_age_is_refused(dev):
    p = dev.policy
    dev.run_to(p.max_ticket_age + 10)
    E = dev.epoch + 1
    refused(dev, dev.precommit_params(1000, 1, seal_rand_epoch=E - p.max_ticket_age - 1),
            ExitCode.USR_ILLEGAL_ARGUMENT,
            f"seal ticket epoch {E - p.max_ticket_age - 1} too old: must be at least "
            f"{E - p.max_ticket_age} (epoch {E} - max ticket age {p.max_ticket_age})")
    ok(dev, dev.precommit_params(1000, 1, seal_rand_epoch=E + 1 - p.max_ticket_age))


# -- ProveCommitSector ------------------------------------------------------------------------

def precommitted(d, numbers):
    d.run_to(d.policy.seal_randomness_lookback)
    ok(d, M.PreCommitSectorBatch2Params(sectors=[d.precommit_params(1000, n) for n in numbers]))
    d.run_to(d.chain.precommit(1000, numbers[0]).seed_epoch)


def commit3(numbers, proofs, aggregate=False, all_or_nothing=True):
    acts = [M.SectorActivationManifest(sector_number=n) for n in numbers]
    if aggregate:
        return M.ProveCommitSectors3Params(sector_activations=acts, aggregate_proof=msgspec.msgpack.encode(proofs),
                                           aggregate_proof_type=1)
    return M.ProveCommitSectors3Params(sector_activations=acts, sector_proofs=proofs,
                                       require_activation_success=all_or_nothing)


def test_prove_commit_sectors3_proves_many_with_their_proofs_or_an_aggregate(d):
    precommitted(d, [1, 2, 3, 4, 5, 6])
    r = ok(d, commit3([1, 2], [d.porep(1000, 1), d.porep(1000, 2)]))
    assert msgspec.msgpack.decode(r.return_value, type=M.BatchReturn) == M.BatchReturn(success_count=2)
    r = ok(d, commit3([3, 4, 5, 6], [d.porep(1000, n) for n in (3, 4, 5, 6)], aggregate=True))
    assert msgspec.msgpack.decode(r.return_value, type=M.BatchReturn).success_count == 4
    assert sorted(d.chain.miner(1000).sectors) == [1, 2, 3, 4, 5, 6] and not d.chain.miner(1000).precommits


def test_prove_commit_sectors3_all_or_nothing_unless_told_otherwise(d):
    precommitted(d, [1, 2, 3, 4])
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    refused(d, commit3([1, 2], [d.porep(1000, 1), b"bad"]), I, "invalid seal proof for sector 2")
    refused(d, commit3([1, 2, 3, 4], [d.porep(1000, n) for n in (1, 2, 3)] + [b"bad"], aggregate=True),
            I, "invalid seal proof for sector 4")
    r = ok(d, commit3([1, 2], [d.porep(1000, 1), b"bad"], all_or_nothing=False))
    assert msgspec.msgpack.decode(r.return_value, type=M.BatchReturn) == M.BatchReturn(
        success_count=1, fail_codes=[M.FailCode(idx=1, code=I)])
    assert sorted(d.chain.miner(1000).sectors) == [1]
    cases = [
        (commit3([], []), "no sectors to prove"),
        (commit3([2, 3], [d.porep(1000, 2), d.porep(1000, 3)], aggregate=True), "too few sectors 2 to aggregate, min 4"),
        (commit3([2], [d.porep(1000, 2), b"x"]), "2 proofs for 1 sectors"),
        (commit3([2, 2], [b"x", b"x"]), "sectors named twice: [2]"),
        (M.ProveCommitSectors3Params(sector_activations=[M.SectorActivationManifest(sector_number=2)]),
         "exactly one of sector proofs or aggregate proof must be non-empty"),
        (commit3([2, 3, 4, 5], [b"x"] * 3, aggregate=True), "3 proofs for 4 sectors"),
    ]
    for params, error in cases:
        refused(d, params, I, error)
    r = ok(d, commit3([9, 2], [b"x", d.porep(1000, 2)], all_or_nothing=False))    # 9 was never precommitted
    assert msgspec.msgpack.decode(r.return_value, type=M.BatchReturn).fail_codes == [
        M.FailCode(idx=0, code=ExitCode.USR_NOT_FOUND)]


def test_prove_commit_waits_for_the_seed_then_the_sector_joins_a_deadline(d):
    d.run_to(d.policy.seal_randomness_lookback)
    ok(d, d.precommit_params(1000, 1))
    pc = d.chain.precommit(1000, 1)
    d.run_to(pc.seed_epoch - 1)                              # lands at the seed epoch: too early
    refused(d, M.ProveCommitSectorParams(sector_number=1, proof=b"any"),
            ExitCode.USR_FORBIDDEN,
            f"too early to prove sector 1: epoch {pc.seed_epoch} is not after the seed epoch "
            f"{pc.seed_epoch}")
    r = ok(d, M.ProveCommitSectorParams(sector_number=1, proof=d.porep(1000, 1)))
    loc = msgspec.msgpack.decode(r.return_value, type=M.SectorLocation)
    assert d.epoch == pc.seed_epoch + 1
    assert d.chain.precommit(1000, 1) is None
    v = view(d, 1)
    assert (v.state, v.deadline, v.partition, v.activation) == ("unproven", loc.deadline, 0, d.epoch)
    assert (v.sealed_cid, v.unsealed_cid) == (pc.sealed_cid, pc.unsealed_cid)
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.sectors, mv.unproven, mv.active) == (0, 1, 1, 0)   # no power until a PoSt
    dv = d.chain.deadline_view(1000, loc.deadline)
    assert [(p.sectors, p.unproven) for p in dv.partitions] == [([1], [1])]


def test_prove_commit_refusals(d):
    d.run_to(d.policy.seal_randomness_lookback)
    ok(d, d.precommit_params(1000, 1))
    pc = d.chain.precommit(1000, 1)
    d.run_to(pc.seed_epoch)
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    refused(d, M.ProveCommitSectorParams(sector_number=9, proof=b""), ExitCode.USR_NOT_FOUND,
            "no pre-committed sector 9")
    refused(d, M.ProveCommitSectorParams(sector_number=1, proof=b"\0" * 32), I,
            "invalid seal proof for sector 1")
    refused(d, M.ProveCommitSectorParams(sector_number=1, proof=d.porep(1000, 1)),
            ExitCode.USR_FORBIDDEN, "sender t0101 is not the worker (t0100) of miner f01000",
            sender="t0101")
    # a proof over the seed of another epoch, or another sector's commitments, is invalid
    ent = address_entropy(1000)
    wrong_seed = seal_proof_with(d, seed=d.chain.randomness(DomainTag.InteractiveSealChallengeSeed,
                                                       pc.seed_epoch - 1, ent))
    refused(d, M.ProveCommitSectorParams(sector_number=1, proof=wrong_seed), I,
            "invalid seal proof for sector 1")
    wrong_ticket = seal_proof_with(d, ticket=d.chain.randomness(DomainTag.SealRandomness,
                                                           pc.seal_rand_epoch, b""))
    refused(d, M.ProveCommitSectorParams(sector_number=1, proof=wrong_ticket), I,
            "invalid seal proof for sector 1")
    ok(d, M.ProveCommitSectorParams(sector_number=1, proof=seal_proof_with(d)))


def seal_proof_with(d, **override):
    """The fake PoRep of sector 1, with some of its inputs replaced."""
    pc = d.chain.precommit(1000, 1)
    ent = address_entropy(1000)
    kw = dict(seal_proof=5, miner=1000, sector=1,
              ticket=d.chain.randomness(DomainTag.SealRandomness, pc.seal_rand_epoch, ent),
              seed=d.chain.randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, ent),
              comm_d=pc.comm_d, comm_r=pc.comm_r)
    kw.update(override)
    return fake_seal_proof(**kw)


def test_prove_commit_too_late_and_pre_commits_that_expire(dev):
    p = dev.policy
    dev.run_to(p.seal_randomness_lookback)
    dev.send(1000, dev.precommit_params(1000, 1))
    dev.send(1000, dev.precommit_params(1000, 2))
    dev.step()
    pc1, pc2 = dev.chain.precommit(1000, 1), dev.chain.precommit(1000, 2)
    dev.run_to(pc1.prove_by - 1)                              # lands exactly at prove_by: fine
    ok(dev, M.ProveCommitSectorParams(sector_number=1, proof=dev.porep(1000, 1)))
    refused(dev, M.ProveCommitSectorParams(sector_number=2, proof=dev.porep(1000, 2)),
            ExitCode.USR_ILLEGAL_ARGUMENT,
            f"too late to prove sector 2: epoch {pc2.prove_by + 1} is after {pc2.prove_by}")
    dev.run_to(pc2.prove_by + p.chain_finality - 1)
    assert dev.chain.precommit(1000, 2) is not None
    dev.step()
    assert dev.chain.precommit(1000, 2) is None
    assert dev.chain.miner_view(1000).expired_precommits == 1
    refused(dev, dev.precommit_params(1000, 2), ExitCode.USR_ILLEGAL_ARGUMENT,
            "sector number 2 already allocated")


def test_a_verifier_that_fails_or_is_missing_fails_the_message_not_the_chain():
    def broken(**kw):
        raise RuntimeError("GPU on fire")
    for verifier, error in [
        (broken, "PoRep verifier failed: RuntimeError: GPU on fire"),
        (_lazy("zqnode.proofs.nowhere", "verify_seal"), "PoRep verifier failed: VerifierUnavailable: "
         "cannot use zqnode.proofs.nowhere.verify_seal: No module named 'zqnode.proofs.nowhere'"),
    ]:
        d = ChainDriver(verifiers=Verifiers(verify_seal=verifier,
                                            verify_window_post=FAKE.verify_window_post))
        d.run_to(2)
        ok(d, d.precommit_params(1000, 1))
        d.run_to(d.chain.precommit(1000, 1).seed_epoch)
        refused(d, M.ProveCommitSectorParams(sector_number=1, proof=b"x"),
                ExitCode.USR_ILLEGAL_STATE, error)
        d.step(3)
        assert d.chain.precommit(1000, 1) is not None


def test_the_verifier_gets_exactly_the_documented_arguments():
    calls = []

    def seal(**kw):
        calls.append(("seal", kw))
        return True

    def post(**kw):
        calls.append(("post", kw))
        return True
    d = ChainDriver(verifiers=Verifiers(verify_seal=seal, verify_window_post=post))
    d.run_to(4)
    ok(d, d.precommit_params(1000, 1, seal_rand_epoch=2))
    d.run_to(d.chain.precommit(1000, 1).seed_epoch)
    r = ok(d, M.ProveCommitSectorParams(sector_number=1, proof=b"seal-proof"))
    loc = msgspec.msgpack.decode(r.return_value, type=M.SectorLocation)
    ent = address_entropy(1000)
    assert calls == [("seal", dict(
        seal_proof=5, miner=1000, sector=1,
        ticket=d.chain.randomness(DomainTag.SealRandomness, 2, ent),
        seed=d.chain.randomness(DomainTag.InteractiveSealChallengeSeed, 5 + 5, ent),
        comm_d=comm_d_of(1000, 1), comm_r=comm_r_of(1000, 1), proof=b"seal-proof"))]
    calls.clear()
    d.run_to_open(1000, loc.deadline)
    di = d.chain.deadline(1000)
    ok(d, d.post_params(1000, [0], proof_for={0: b"proof-bytes"}))
    assert calls == [("post", dict(
        seal_proof=5, randomness=d.chain.randomness(DomainTag.WindowedPoStChallengeSeed,
                                                    di.challenge, ent),
        sectors=[(1, comm_r_of(1000, 1))], proof=b"proof-bytes"))]


# -- deadline assignment ----------------------------------------------------------------------

# builtin-actors tests/deadline_assignment.rs: partition size 4, max 100 partitions;
# per deadline (live, dead) or None (immutable), and the sectors it should get.
ACTOR_CASES = [
    (10, [((0, 0), [0, 1, 2, 3, 8, 9]), ((0, 0), [4, 5, 6, 7])]),
    (5, [((0, 0), [3, 4]), None, None, ((1, 0), [0, 1, 2])]),
    (1, [((8, 0), []), ((7, 5), [0])]),
    (1, [((4, 4), []), ((4, 0), [0])]),
    (1, [((1, 0), []), ((2, 0), [0])]),
    (1, [((1, 0), []), ((0, 2), [0])]),
    (1, [((0, 1), []), ((0, 2), [0])]),
    (1, [((1, 1), []), ((0, 2), [0])]),
]


@pytest.mark.parametrize("n, deadlines", ACTOR_CASES)
def test_assign_deadlines_follows_the_actor(n, deadlines):
    counts = [None if dl is None else (dl[0][0], dl[0][0] + dl[0][1]) for dl in deadlines]
    got = actor.assign_deadlines(MAINNET, 4, 100, counts, n)
    for i, dl in enumerate(deadlines):
        want = [] if dl is None else dl[1]
        assert [s for s, at in enumerate(got) if at == i] == want


def test_assign_deadlines_stops_at_the_partition_limit():
    assert actor.assign_deadlines(MAINNET, 5, 5, [(0, 0)] * 48, 1200).count(7) == 25
    with pytest.raises(actor.ActorError, match="max partitions limit 5 reached for all deadlines"):
        actor.assign_deadlines(MAINNET, 5, 5, [(0, 0)] * 48, 1201)
    actor.assign_deadlines(MAINNET, 5, 5, [(1, 2)] * 48, 1104)
    with pytest.raises(actor.ActorError, match="max partitions limit"):
        actor.assign_deadlines(MAINNET, 5, 5, [(1, 2)] * 48, 1105)


@pytest.mark.parametrize("p", [DEVNET, MAINNET])
def test_the_open_deadline_and_the_next_are_not_mutable(p):
    for epoch in (p.proving_period * 3 + 5, p.proving_period * 3 + p.challenge_window * 47 + 1):
        start = p.proving_period * 3
        d = deadline_info(p, start, (epoch - start) // p.challenge_window, epoch)
        mutable = [actor.deadline_is_mutable(p, d.period_start, i, epoch) for i in range(48)]
        frozen = {d.index, (d.index + 1) % 48}
        assert [i for i in range(48) if not mutable[i]] == sorted(frozen)


def test_sectors_fill_partitions_then_spread_over_deadlines(d):
    locs = [d.seal(1000, n) for n in range(1, 6)]
    current = d.chain.deadline(1000).index
    got = [(loc.deadline, loc.partition) for loc in locs]
    # 2 KiB: 2 sectors a partition; each new partition goes to the emptiest mutable deadline
    dls = [got[0][0], got[2][0], got[4][0]]
    assert got == [(dls[0], 0), (dls[0], 0), (dls[1], 0), (dls[1], 0), (dls[2], 0)]
    assert len(set(dls)) == 3 and current not in dls


@pytest.mark.parametrize("network", ["devnet", "mainnet"])
def test_large_sectors_share_one_partition(network):
    d = ChainDriver(network, miners=[MinerSpec(seal_proof=8)])     # 32 GiB: 2349 per partition
    assert d.chain.miner(1000).partition_sectors == 2349
    locs = {(d.seal(1000, n).deadline, 0) for n in range(1, 4)}
    assert len(locs) == 1
    dl = locs.pop()[0]
    assert [p.sectors for p in d.chain.deadline_view(1000, dl).partitions] == [[1, 2, 3]]


def test_a_sector_proven_in_a_deadline_goes_two_deadlines_on(dev):
    dev.run_to(2)
    ok(dev, dev.precommit_params(1000, 1))
    pc = dev.chain.precommit(1000, 1)
    dev.run_to(pc.seed_epoch)
    # land the ProveCommit in the first epoch of deadline 0's window
    dev.run_to_open(1000, 0)
    r = ok(dev, M.ProveCommitSectorParams(sector_number=1, proof=dev.porep(1000, 1)))
    assert dev.chain.deadline(1000).index == 0
    assert msgspec.msgpack.decode(r.return_value, type=M.SectorLocation).deadline == 2


# -- WindowPoSt --------------------------------------------------------------------------------

def test_a_post_activates_the_partition_and_its_power(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.active, mv.unproven) == (2 * SIZE, 2, 0)
    assert d.chain.deadline_view(1000, dl).posted == [0]
    assert view(d, 1).state == view(d, 2).state == "active"
    run_past_close(d, dl)
    assert d.chain.deadline_view(1000, dl).posted == []
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.penalties, mv.faulty) == (2 * SIZE, 0, 0)
    prove_deadline(d, dl)                                  # the next period, again
    assert d.chain.miner_view(1000).power == 2 * SIZE


def test_post_refusals(d):
    dl = sealed_pair(d)
    d.run_to_open(1000, dl)
    di = d.chain.deadline(1000)
    E = d.epoch + 1
    good = d.post_params(1000, [0])
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    rep = msgspec.structs.replace
    other = rep(good, chain_commit_epoch=di.challenge - 1,
                chain_commit_rand=d.chain.randomness(DomainTag.PoStChainCommit, di.challenge - 1))
    bad_rand = fake_window_post_proof(
        seal_proof=5, randomness=d.chain.randomness(DomainTag.WindowedPoStChallengeSeed, di.open,
                                                    address_entropy(1000)),
        sectors=[(1, comm_r_of(1000, 1)), (2, comm_r_of(1000, 2))])
    cases = [
        (rep(good, deadline=(dl + 1) % 48), f"invalid deadline {(dl + 1) % 48} at epoch {E}, expected {dl}"),
        (rep(good, deadline=48), "invalid deadline 48 of 48"),
        (rep(good, partitions=[], proofs=[]), "no partitions proven"),
        (rep(good, partitions=[M.PoStPartition(index=i) for i in range(4)], proofs=[b""] * 4),
         "too many partitions 4, limit 3"),
        (rep(good, proofs=[]), "0 proofs for 1 partitions: need one each"),
        (other, f"expected chain commit epoch {di.challenge - 1} to be at least {di.challenge}"),
        (rep(good, chain_commit_epoch=E), f"chain commit epoch {E} must be less than the current epoch {E}"),
        (rep(good, chain_commit_rand=b"\0" * 32),
         "post commit randomness mismatched (the chain forked since)"),
        (rep(good, partitions=good.partitions * 2, proofs=good.proofs * 2), "duplicate partitions proven"),
        (rep(good, partitions=[M.PoStPartition(index=0, skipped=[1, 7])]),
         "skipped faults contain sectors outside partition 0: [7]"),
        (rep(good, proofs=[b"\0" * 32]), f"invalid PoSt proof for partition 0 of deadline {dl}"),
        (rep(good, proofs=[bad_rand]), f"invalid PoSt proof for partition 0 of deadline {dl}"),
        (rep(good, partitions=[M.PoStPartition(index=0, skipped=[1, 2])]),
         "cannot prove partitions with no active sectors"),
    ]
    for params, error in cases:
        would_refuse(d, params, I, error)
    would_refuse(d, rep(good, partitions=[M.PoStPartition(index=1)]), ExitCode.USR_NOT_FOUND,
                 f"no such partition 1 in deadline {dl}")
    would_refuse(d, good, ExitCode.USR_FORBIDDEN,
                 "sender t0101 is not the worker (t0100) of miner f01000", sender="t0101")
    refused(d, cases[-1][0], I, cases[-1][1])              # on chain too, changing nothing
    ok(d, d.post_params(1000, [0]))
    refused(d, d.post_params(1000, [0]), I, "partition already proven: [0]")


def test_skipped_sectors_become_faulty_and_the_rest_is_proven(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl, skipped={0: [2]})
    assert (view(d, 1).state, view(d, 2).state) == ("active", "faulty")
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.skipped_faults, mv.faulty) == (SIZE, 1, 1)
    run_past_close(d, dl)
    assert d.chain.miner_view(1000).penalties == 1          # the skipped one, at the close


def test_a_missed_post_makes_every_sector_faulty_and_penalties_continue(d):
    dl = sealed_pair(d)
    run_past_close(d, dl)                                  # never proven: unproven -> faulty
    mv = d.chain.miner_view(1000)
    assert (mv.faulty, mv.unproven, mv.detected_faults, mv.penalties, mv.power) == (2, 0, 2, 2, 0)
    run_past_close(d, dl)                                  # still faulty a period later
    mv = d.chain.miner_view(1000)
    assert (mv.detected_faults, mv.penalties) == (2, 4)


def test_proven_sectors_that_miss_a_post_lose_their_power(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    run_past_close(d, dl)
    assert d.chain.miner_view(1000).power == 2 * SIZE
    run_past_close(d, dl)                                  # this time no PoSt
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.faulty, mv.detected_faults, mv.penalties) == (0, 2, 2, 2)
    assert d.chain.deadline_view(1000, dl).partitions[0].faults == [1, 2]


def run_to_declaration_window(d: ChainDriver, dl: int) -> None:
    """To the Open of deadline dl - 2: declarations for dl are still on time there."""
    d.run_to_open(1000, (dl - 2) % 48)


def test_declared_faults_lose_power_at_once_and_recover_with_the_next_post(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    run_past_close(d, dl)
    run_to_declaration_window(d, dl)
    ok(d, faults(dl, 0, [2]))
    assert view(d, 2).state == "faulty" and d.chain.miner_view(1000).power == SIZE
    prove_deadline(d, dl)                                  # proves sector 1 only
    run_past_close(d, dl)
    mv = d.chain.miner_view(1000)
    assert (mv.penalties, mv.detected_faults, mv.power) == (1, 0, SIZE)
    run_to_declaration_window(d, dl)
    ok(d, recoveries(dl, 0, [2]))
    assert view(d, 2).state == "recovering" and d.chain.miner_view(1000).power == SIZE
    prove_deadline(d, dl)                                  # includes the recovering sector
    assert view(d, 2).state == "active" and d.chain.miner_view(1000).power == 2 * SIZE
    run_past_close(d, dl)
    assert d.chain.miner_view(1000).penalties == 1


def test_a_recovery_without_a_post_fails_and_is_penalised(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    run_past_close(d, dl)
    run_to_declaration_window(d, dl)
    ok(d, faults(dl, 0, [1]))
    run_past_close(d, dl)                                  # no PoSt: 2 detected, 1 continued
    assert d.chain.miner_view(1000).penalties == 2
    run_to_declaration_window(d, dl)
    ok(d, recoveries(dl, 0, [1, 2]))
    assert d.chain.miner_view(1000).recovering == 2
    run_past_close(d, dl)
    mv = d.chain.miner_view(1000)
    assert (mv.recovering, mv.faulty, mv.penalties, mv.power) == (0, 2, 4, 0)


def test_a_fault_declaration_retracts_a_recovery(d):
    dl = sealed_pair(d)
    run_past_close(d, dl)                                  # both faulty
    run_to_declaration_window(d, dl)
    ok(d, recoveries(dl, 0, [1, 2]))
    ok(d, faults(dl, 0, [2]))
    assert (view(d, 1).state, view(d, 2).state) == ("recovering", "faulty")


def test_declarations_must_come_before_the_fault_cutoff(d):
    dl = sealed_pair(d)
    d.run_to_open(1000, (dl - 1) % 48)                     # the deadline before dl is open
    E = d.epoch + 1
    cutoff = d.chain.deadline(1000, E).open + d.policy.challenge_window - d.policy.fault_cutoff
    for params, what in [(faults(dl, 0, [1]), "fault"), (recoveries(dl, 0, [1]), "recovery")]:
        refused(d, params, ExitCode.USR_ILLEGAL_ARGUMENT,
                f"late {what} declaration at deadline {dl}: its fault cutoff {cutoff} has passed "
                f"(epoch {d.epoch + 1})")


def test_declaration_refusals(d):
    dl = sealed_pair(d)
    run_to_declaration_window(d, dl)
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    for make, what in [(faults, "fault"), (recoveries, "recovery")]:
        would_refuse(d, make(48, 0, [1]), I, f"invalid {what} declaration deadline 48, must be < 48")
        would_refuse(d, make(dl, 1, [1]), ExitCode.USR_NOT_FOUND, f"no partition 1 in deadline {dl}")
        would_refuse(d, make(dl, 0, [1, 9]), I,
                     f"{what} declaration names sectors outside deadline {dl} partition 0: [9]")
        would_refuse(d, make(dl, 0, [1]), ExitCode.USR_FORBIDDEN,
                     "sender t0101 is not the worker (t0100) of miner f01000", sender="t0101")
    refused(d, faults(dl, 0, [1, 9]), I,
            f"fault declaration names sectors outside deadline {dl} partition 0: [9]")
    ok(d, recoveries(dl, 0, [1]))                          # not faulty: nothing to recover
    assert d.chain.miner_view(1000).recovering == 0


def test_a_reorg_past_the_challenge_changes_the_post_randomness(d):
    dl = sealed_pair(d)
    d.run_to_open(1000, dl)
    di = d.chain.deadline(1000)
    params = d.post_params(1000, [0])                      # proven on this fork
    depth = d.epoch - di.challenge + 1                     # replaces the Challenge epoch
    d.chain.reorg(depth, 0.0)
    refused(d, params, ExitCode.USR_ILLEGAL_ARGUMENT,
            "post commit randomness mismatched (the chain forked since)")
    fresh_commit = d.post_params(1000, [0])
    stale = msgspec.structs.replace(fresh_commit, proofs=params.proofs)
    refused(d, stale, ExitCode.USR_ILLEGAL_ARGUMENT,
            f"invalid PoSt proof for partition 0 of deadline {dl}")
    ok(d, fresh_commit)


def test_power_counts_active_sectors_only(d):
    for n in range(1, 5):
        d.seal(1000, n)
    assert actor.power(d.chain.miner(1000)) == 0
    dls = sorted({view(d, n).deadline for n in range(1, 5)})
    assert len(dls) == 2
    prove_deadline(d, dls[0])
    assert actor.power(d.chain.miner(1000)) == 2 * SIZE == d.chain.miner_view(1000).power
    first = {n for n in range(1, 5) if view(d, n).deadline == dls[0]}
    assert actor.active_sectors(d.chain.miner(1000)) == first


def test_proving_period_offset_is_the_actors_hash():
    digest = blake2b256(address_entropy(1000) + (0).to_bytes(8, "big"))
    for p in (DEVNET, MAINNET):
        assert actor.proving_period_offset(p, 1000, 0) == int.from_bytes(digest[:8], "big") % p.proving_period
    assert ChainDriver().chain.miner(1000).period_offset == actor.proving_period_offset(DEVNET, 1000, 0)


# -- TerminateSectors ----------------------------------------------------------------------------

def terminate(deadline, partition, sectors):
    return M.TerminateSectorsParams(terminations=decl(deadline, partition, sectors))


def test_a_terminated_sector_leaves_its_partition_and_its_power_goes(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    run_past_close(d, dl)                                  # dl is mutable again
    r = ok(d, terminate(dl, 0, [2]))
    assert msgspec.msgpack.decode(r.return_value, type=M.TerminateSectorsReturn).done
    mv = d.chain.miner_view(1000)
    assert (mv.power, mv.sectors, mv.terminated) == (SIZE, 1, 1)
    assert view(d, 2) is None and d.chain.deadline_view(1000, dl).partitions[0].sectors == [1]
    prove_deadline(d, dl)                                  # the next PoSt proves sector 1 only
    run_past_close(d, dl)
    assert (d.chain.miner_view(1000).penalties, view(d, 1).state) == (0, "active")
    # a terminated sector still fills its partition (until compaction, which this chain lacks)
    assert d.seal(1000, 3) != M.SectorLocation(deadline=dl, partition=0)


def test_termination_refusals(d):
    dl = sealed_pair(d)
    prove_deadline(d, dl)                                  # dl is being proven: immutable
    refused(d, terminate(dl, 0, [1]), ExitCode.USR_ILLEGAL_ARGUMENT,
            f"cannot terminate sectors in immutable deadline {dl}")
    run_past_close(d, dl)
    refused(d, terminate(dl, 0, [1, 7]), ExitCode.USR_ILLEGAL_ARGUMENT,
            f"can only terminate live sectors: [7] are not live in deadline {dl} partition 0")
    refused(d, terminate(dl, 3, [1]), ExitCode.USR_NOT_FOUND, f"no partition 3 in deadline {dl}")
    refused(d, terminate(99, 0, [1]), ExitCode.USR_ILLEGAL_ARGUMENT,
            f"invalid termination deadline 99, must be < {d.policy.period_deadlines}")
    refused(d, terminate(dl, 0, [1]), ExitCode.USR_FORBIDDEN,
            "sender t0999 is not the worker (t0100) of miner f01000", sender="t0999")
    with pytest.raises(MessageError, match=r"length <= 3000"):         # refused by the pool
        d.send(1000, M.TerminateSectorsParams(terminations=decl(dl, 0, [1]) * 3001))
    ok(d, M.TerminateSectorsParams(terminations=decl(dl, 0, [1]) * 2))       # named twice: once
    assert d.chain.miner_view(1000).terminated == 1
    refused(d, terminate(dl, 0, [1]), ExitCode.USR_ILLEGAL_ARGUMENT,
            f"can only terminate live sectors: [1] are not live in deadline {dl} partition 0")


def test_a_control_address_may_send_the_miners_messages():
    d = driver("devnet", miners=[MinerSpec(control=["t0101"])])
    d.run_to(d.policy.seal_randomness_lookback)
    assert run(d, d.precommit_params(1000, 1), sender="t0101").exit_code == 0
    refused(d, d.precommit_params(1000, 2), ExitCode.USR_FORBIDDEN,
            "sender t0999 is not the worker (t0100) or a control address (t0101) of miner f01000",
            sender="t0999")
    assert d.chain.miner_view(1000).control == ["t0101"]



# -- expiration and ExtendSectorExpiration2 -------------------------------------------------------

def expiring(d, n, lifetime):
    """Sector n sealed with an expiration `lifetime` epochs after its PreCommit lands."""
    d.run_to(max(d.epoch, d.policy.seal_randomness_lookback))
    ok(d, d.precommit_params(1000, n, expiration=d.epoch + 1 + lifetime))
    d.run_to(d.chain.precommit(1000, n).seed_epoch)
    ok(d, M.ProveCommitSectorParams(sector_number=n, proof=d.porep(1000, n)))
    return d.chain.sector(1000, n)


def test_a_sector_expires_at_the_end_of_its_deadline_after_its_expiration(dev):
    s = expiring(dev, 1, 310)
    assert s.expiration > 0 and dev.chain.precommit(1000, 1) is None
    dev.run_to(s.expiration - 1)
    assert view(dev, 1) is not None
    run_past_close(dev, s.deadline)                     # its deadline's end after the expiration
    while view(dev, 1) is not None and dev.epoch < s.expiration + dev.policy.proving_period:
        run_past_close(dev, s.deadline)
    mv = dev.chain.miner_view(1000)
    assert view(dev, 1) is None and (mv.expired, mv.sectors) == (1, 0)


def test_extension_moves_the_expiration_and_its_checks(dev):
    s = expiring(dev, 1, 310)
    x = lambda e, sectors=(1,), partition=s.partition: M.ExtendSectorExpiration2Params(extensions=[
        M.ExpirationExtension2(deadline=s.deadline, partition=partition, sectors=list(sectors),
                               new_expiration=e)])
    I = ExitCode.USR_ILLEGAL_ARGUMENT
    refused(dev, x(s.expiration - 1), I, f"cannot reduce sector expiration to {s.expiration - 1} "
                                         f"from {s.expiration}")
    far = dev.epoch + 1 + dev.policy.max_sector_expiration_extension + 1
    refused(dev, x(far), I, f"invalid expiration {far}, cannot be more than "
                            f"{dev.policy.max_sector_expiration_extension} past current epoch {dev.epoch + 1}")
    refused(dev, x(s.expiration, sectors=(9,)), ExitCode.USR_NOT_FOUND,
            f"sectors [9] are not live in deadline {s.deadline} partition {s.partition}")
    refused(dev, x(s.expiration, partition=5), ExitCode.USR_NOT_FOUND, f"no such partition {s.deadline}:5")
    ok(dev, x(s.expiration + 5000))
    assert view(dev, 1).expiration == s.expiration + 5000
    dev.run_to(s.expiration + 100)
    assert view(dev, 1) is not None and dev.chain.miner_view(1000).expired == 0


def test_a_precommit_expiration_too_short_is_refused(dev):
    dev.run_to(dev.policy.seal_randomness_lookback)
    E = dev.epoch + 1
    refused(dev, dev.precommit_params(1000, 1, expiration=E + 299), ExitCode.USR_ILLEGAL_ARGUMENT,
            f"invalid expiration {E + 299}, total sector lifetime (299) must exceed 300 after activation {E}")


def test_a_sector_that_never_expires_cannot_be_given_an_expiration(dev):
    precommitted(dev, [1])
    ok(dev, M.ProveCommitSectorParams(sector_number=1, proof=dev.porep(1000, 1)))   # expiration 0
    s = view(dev, 1)
    refused(dev, M.ExtendSectorExpiration2Params(extensions=[M.ExpirationExtension2(
        deadline=s.deadline, partition=s.partition, sectors=[1], new_expiration=dev.epoch + 400)]),
        ExitCode.USR_ILLEGAL_ARGUMENT, f"cannot reduce sector expiration to {dev.epoch + 400} from never")


def test_hostile_lists_are_refused_while_decoding():
    d = ChainDriver("devnet")
    acts = [M.SectorActivationManifest(sector_number=1)]
    bad = msgspec.msgpack.encode({"sector_activations": [{"sector_number": 1, "pieces": [[]] * 100_000}],
                                  "sector_proofs": [b"x"]})
    with pytest.raises(MessageError, match="bad parameters for ProveCommitSectors3"):
        M.decode_params("ProveCommitSectors3", bad)
    deep = msgspec.msgpack.encode({"sector_activations": [{"sector_number": 1}], "sector_proofs": []})
    deep = deep[:-1] + b"\x91" * 100_000 + b"\x90"          # a hundred thousand nested arrays
    with pytest.raises(MessageError, match="bad parameters"):
        M.decode_params("ProveCommitSectors3", deep)
    assert acts and d.chain.head.epoch == 0
