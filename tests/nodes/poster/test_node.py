"""The poster node over the in-memory bus under a mock clock, against a real chain node
whose verifier is FAKE: the fake prover's proofs are valid exactly when they were made
for the randomness and sectors the chain's verifier gets."""
import itertools

import pytest
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.chain.core import MinerSpec
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.groups import unwrap
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.poster import events as E
from zqnode.nodes.poster.checker import SectorChecker
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.node import PosterNode
from zqnode.nodes.poster.prover import FakeProver

_names = itertools.count()
MINER = 1000


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://poster-{next(_names)}")).run)


def sealed(numbers, control=()) -> ChainDriver:
    """A devnet chain where f01000 has sealed (pre-committed and proven) these sectors."""
    d = ChainDriver(seed="poster", miners=[MinerSpec(control=list(control))])
    d.run_to(d.policy.seal_randomness_lookback)
    ids = [d.send(MINER, d.precommit_params(MINER, n)) for n in numbers]
    d.step()
    assert all(d.receipt(i).exit_code == 0 for i in ids)
    d.run_to(max(d.chain.precommit(MINER, n).seed_epoch for n in numbers))
    ids = [d.send(MINER, M.ProveCommitSectorParams(sector_number=n, proof=d.porep(MINER, n)))
           for n in numbers]
    d.step()
    assert all(d.receipt(i).exit_code == 0 for i in ids)
    return d


async def start_chain(nursery, bus, tmp_path, driver: ChainDriver) -> ChainNode:
    node = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"),
                                bus=BusConfig(address=bus)),
                     ChainConfig(verifier="fake"), clock=trio.current_time)
    node.open()
    node.chain = driver.chain              # go on from the driver's chain (this node never restarts)
    await nursery.start(node.run)
    return node


class Trace:
    """What a poster node's core took in and gave out, and a way to wait for a moment."""

    def __init__(self):
        self.items: list = []
        self._waiters: list[tuple] = []

    def __call__(self, item) -> None:
        self.items.append(item)
        for w in list(self._waiters):
            if w[0](item):
                w[1].set()
                self._waiters.remove(w)

    async def wait_for(self, pred) -> None:
        done = trio.Event()
        self._waiters.append((pred, done))
        await done.wait()

    def of(self, kind, **fields) -> list:
        return [x for x in self.items if isinstance(x, kind)
                and all(getattr(x, k) == v for k, v in fields.items())]


def healthy(seal_proof, sector) -> str:
    return ""


async def start_poster(nursery, bus, tmp_path, prover, *, check=healthy, **cfg):
    """A poster node in its own cancel scope (cancelling it is a kill: nothing is flushed
    that was not committed)."""
    trace = Trace()
    node = PosterNode(NodeIdentity(name="poster-1", repo=str(tmp_path / "poster"),
                                 bus=BusConfig(address=bus)),
                      PosterConfig(**cfg), prover=prover,
                      checker=SectorChecker(check, timeout_s=5, in_thread=False),
                      locator=_NoStorage(), trace=trace)
    scope = trio.CancelScope()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await node.run(task_status=task_status)
    await nursery.start(run)
    return node, trace, scope


class _NoStorage:
    def locate(self, miner, number):
        return f"/sectors/{miner}/{number}"


def deadlines_with_sectors(driver) -> dict[int, list[int]]:
    m = driver.chain.miner(MINER)
    return {i: sorted(n for p in d.partitions for n in p.sectors)
            for i, d in enumerate(m.deadlines) if d.partitions}


async def run_until(chain: ChainNode, epoch: int) -> None:
    while chain.chain.head.epoch < epoch:
        await trio.sleep(1)


def next_window(chain: ChainNode, index: int):
    """The next window of deadline `index` that has not begun its runner (Challenge ahead)."""
    di = chain.chain.deadline(MINER)
    pol = chain.chain.policy
    open_ = di.open + ((index - di.index) % pol.period_deadlines) * pol.challenge_window
    if open_ - pol.challenge_lookback <= chain.chain.head.epoch:
        open_ += pol.proving_period
    return open_, open_ + pol.challenge_window


async def test_a_proving_period_passes_with_every_deadline_proven(bus, nursery, tmp_path, autojump_clock):
    driver = sealed(range(1, 7))
    dls = deadlines_with_sectors(driver)
    assert list(dls.values()) == [[1, 2], [3, 4], [5, 6]]      # three deadlines, a partition each
    chain = await start_chain(nursery, bus, tmp_path, driver)
    prover = FakeProver(seconds=0.4)
    node, trace, _ = await start_poster(nursery, bus, tmp_path, prover)
    start = chain.chain.head.epoch
    await run_until(chain, start + chain.chain.policy.proving_period + 10)
    m = chain.chain.miner_view(MINER)
    assert (m.penalties, m.detected_faults, m.skipped_faults, m.faulty) == (0, 0, 0, 0)
    assert (m.active, m.unproven) == (6, 0)
    outcomes = node.store.outcomes(MINER, limit=1000)
    assert {o.status for o in outcomes} == {"proven", "empty"}
    assert sorted(o.index for o in outcomes if o.status == "proven") == sorted(dls)
    assert len({o.index for o in outcomes}) == 48                   # every deadline had a runner
    pushes = trace.of(E.PushSubmission)
    assert len(pushes) == 3 and len(prover.requests) == 3
    assert node.refused == 0 and node.core.stale_events == 0
    # proofs and messages are in the store, each message landed
    assert {r.status for r in node.store.messages(MINER)} == {"landed"}


async def test_killed_after_proving_the_restarted_poster_pushes_the_stored_proofs(
        bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2])
    (index,) = deadlines_with_sectors(driver)
    chain = await start_chain(nursery, bus, tmp_path, driver)
    open_, close = next_window(chain, index)
    node, trace, scope = await start_poster(nursery, bus, tmp_path, FakeProver(), submit_after_open=3)
    await trace.wait_for(lambda x: isinstance(x, E.StoreProofs) and x.deadline == index)
    assert chain.chain.head.epoch == open_ - 1                      # Challenge + 2
    scope.cancel()                                                  # killed before any push
    assert trace.of(E.PushSubmission) == []
    refuse = FakeProver(fail=lambda req: "this poster must not prove again")
    node2, trace2, _ = await start_poster(nursery, bus, tmp_path, refuse, submit_after_open=3)
    await run_until(chain, close)
    assert refuse.requests == [] and trace2.of(E.ProveBatch) == []
    (push,) = trace2.of(E.PushSubmission)
    assert push.proofs == [p.proof for p in trace.of(E.StoreProofs)[0].partitions]
    (landed,) = trace2.of(E.MessageLanded)
    assert landed.exit_code == 0 and open_ + 3 < landed.epoch < close
    (outcome,) = [o for o in node2.store.outcomes(MINER) if o.index == index]
    assert (outcome.status, outcome.landed) == ("proven", [0])
    m = chain.chain.miner_view(MINER)
    assert (m.penalties, m.detected_faults, m.active) == (0, 0, 2)


async def test_killed_after_pushing_the_restarted_poster_waits_for_the_same_message(
        bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2])
    (index,) = deadlines_with_sectors(driver)
    chain = await start_chain(nursery, bus, tmp_path, driver)
    open_, close = next_window(chain, index)
    node, trace, scope = await start_poster(nursery, bus, tmp_path, FakeProver())
    await trace.wait_for(lambda x: isinstance(x, E.MessagePushed) and x.ref == "batch-0")
    scope.cancel()
    (pushed,) = trace.of(E.MessagePushed)
    assert chain.chain.lookup(pushed.msg_id).status == "pending"
    node2, trace2, _ = await start_poster(nursery, bus, tmp_path, FakeProver())
    await run_until(chain, close)
    assert trace2.of(E.PushSubmission) == [] and trace2.of(E.ProveBatch) == []
    (wait,) = trace2.of(E.WaitMessage)
    assert wait.msg_id == pushed.msg_id
    (landed,) = trace2.of(E.MessageLanded)
    assert (landed.msg_id, landed.exit_code) == (pushed.msg_id, 0)
    posts = [m for ts in chain.chain.tipsets for m in ts.messages if m.method == "SubmitWindowedPoSt"]
    assert [m.id for m in posts] == [pushed.msg_id]                 # one message, not two
    assert chain.chain.miner_view(MINER).penalties == 0


async def test_a_reorg_past_challenge_proves_again_for_the_new_randomness(
        bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2])
    (index,) = deadlines_with_sectors(driver)
    chain = await start_chain(nursery, bus, tmp_path, driver)
    open_, close = next_window(chain, index)
    node, trace, _ = await start_poster(nursery, bus, tmp_path, FakeProver(), submit_after_open=1)
    await trace.wait_for(lambda x: isinstance(x, E.StoreProofs) and x.deadline == index)
    assert chain.chain.head.epoch == open_ - 1
    old = trace.of(E.StoreProofs)[0].randomness
    operator = Peer(name="operator", role="admin", cfg=BusConfig(address=bus))
    await nursery.start(operator.run)
    reorged = await BusChainAPI(operator).reorg(3)                       # replaces Challenge (open - 3) .. open - 1
    assert [t.epoch for t in reorged.reverted] == [open_ - 1, open_ - 2, open_ - 3]
    await run_until(chain, close)
    (abort,) = [a for a in trace.of(E.Abort) if "revert" in a.reason]
    assert abort.reason == f"revert down to epoch {open_ - 3} replaced the Challenge tipset"
    stored = trace.of(E.StoreProofs)
    assert len(stored) == 2 and stored[1].randomness != old
    challenge = chain.chain.randomness(DomainTag.WindowedPoStChallengeSeed, open_ - 3, address_entropy(MINER))
    assert stored[1].randomness == challenge
    (push,) = trace.of(E.PushSubmission)
    assert push.randomness == challenge
    (landed,) = trace.of(E.MessageLanded)
    assert landed.exit_code == 0
    m = chain.chain.miner_view(MINER)
    assert (m.penalties, m.detected_faults, m.active) == (0, 0, 2)


async def test_failing_sectors_are_declared_or_skipped_then_recovered_and_proven_again(
        bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2, 3, 4])
    first, second = deadlines_with_sectors(driver)
    chain = await start_chain(nursery, bus, tmp_path, driver)
    pol = chain.chain.policy
    open1, close1 = next_window(chain, first)
    open2, close2 = next_window(chain, second)
    broken = {2}                                       # found by the runner two deadlines before

    def check(seal_proof, sector) -> str:
        return "sealed file is missing" if sector.number in broken else ""
    node, trace, _ = await start_poster(nursery, bus, tmp_path, FakeProver(), check=check)
    # sector 4 breaks after its deadline was checked as "index+2": its own runner skips it
    await trace.wait_for(lambda x: isinstance(x, E.LoadDeadline) and x.index == second
                         and broken.add(4) is None)
    await run_until(chain, max(close1, close2))
    (faults,) = trace.of(E.DeclareFaults)
    assert faults.declarations == [E.Declaration(deadline=first, partition=0, sectors=[2])]
    assert [p.partitions for p in trace.of(E.PushSubmission)] == [
        [E.PoStPart(index=0, skipped=[])], [E.PoStPart(index=0, skipped=[4])]]
    states = [chain.chain.sector(MINER, n).state for n in (1, 2, 3, 4)]
    assert states == ["active", "faulty", "active", "faulty"]
    assert chain.chain.miner_view(MINER).skipped_faults == 1
    broken.clear()                                     # the operator fixed the storage
    await run_until(chain, max(close1, close2) + pol.proving_period)
    assert [d.declarations for d in trace.of(E.DeclareRecoveries)] == [
        [E.Declaration(deadline=first, partition=0, sectors=[2])],
        [E.Declaration(deadline=second, partition=0, sectors=[4])]]
    assert [p.partitions for p in trace.of(E.PushSubmission)][2:] == [[E.PoStPart(index=0)]] * 2
    m = chain.chain.miner_view(MINER)
    assert (m.active, m.faulty, m.recovering, m.detected_faults) == (4, 0, 0, 0)
    assert m.penalties == 2                           # one deadline each for sectors 2 and 4
    assert node.refused == 0


async def test_prover_errors_are_retried_until_a_proof_lands(bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2])
    (index,) = deadlines_with_sectors(driver)
    chain = await start_chain(nursery, bus, tmp_path, driver)
    open_, close = next_window(chain, index)
    failures = iter(["GPU out of memory", "GPU out of memory"])
    prover = FakeProver(fail=lambda req: next(failures, None))
    node, trace, _ = await start_poster(nursery, bus, tmp_path, prover, prove_retry_s=1)
    await run_until(chain, close)
    assert [p.attempt for p in trace.of(E.ProveBatch)] == [1, 2, 3]
    assert [p.delay_s for p in trace.of(E.ProveBatch)] == [0, 1, 2]
    assert [f.reason for f in trace.of(E.ProveFailed)] == ["ProverError: GPU out of memory"] * 2
    (outcome,) = [o for o in node.store.outcomes(MINER) if o.index == index]
    assert outcome.status == "proven"
    assert [n for n in outcome.notes if "failed" in n] == [
        f"epoch {open_ - 1}: batch-0 attempt 1 failed: ProverError: GPU out of memory; retrying in 1s",
        f"epoch {open_ - 1}: batch-0 attempt 2 failed: ProverError: GPU out of memory; retrying in 2s"]


async def test_a_miner_the_chain_does_not_have_stops_the_poster_with_a_clear_error(
        bus, nursery, tmp_path, autojump_clock):
    from zqnode.nodes.poster.node import PosterStartError
    await start_chain(nursery, bus, tmp_path, ChainDriver(seed="poster"))
    node = PosterNode(NodeIdentity(name="poster-1", repo=str(tmp_path / "poster"),
                                 bus=BusConfig(address=bus)), PosterConfig(miners=[7]), prover=FakeProver())
    with pytest.raises(BaseException) as failed:
        async with trio.open_nursery() as n:
            await n.start(node.run)
    leaf = unwrap(failed.value)
    assert isinstance(leaf, PosterStartError)
    assert str(leaf) == "the chain refused: no miner f07 (miners: f01000)"


async def test_a_terminated_sector_is_no_longer_proven(bus, nursery, tmp_path, autojump_clock):
    driver = sealed(range(1, 5))
    where = driver.chain.sector(MINER, 2)
    msg = driver.send(MINER, M.TerminateSectorsParams(terminations=[M.SectorDeclaration(
        deadline=where.deadline, partition=where.partition, sectors=[2])]))
    driver.step()
    assert driver.receipt(msg).exit_code == 0
    chain = await start_chain(nursery, bus, tmp_path, driver)
    prover = FakeProver()
    node, trace, _ = await start_poster(nursery, bus, tmp_path, prover)
    await run_until(chain, chain.chain.head.epoch + chain.chain.policy.proving_period + 10)
    proven = {s.number for r in prover.requests for p in r.partitions for s in p.sectors}
    assert proven == {1, 3, 4} and trace.of(E.DeclareFaults) == []
    m = chain.chain.miner_view(MINER)
    assert (m.active, m.terminated, m.penalties, m.faulty) == (3, 1, 0, 0)



async def test_posts_come_from_the_configured_control_address(bus, nursery, tmp_path, autojump_clock):
    driver = sealed([1, 2], control=["t0101"])
    chain = await start_chain(nursery, bus, tmp_path, driver)
    node, _, _ = await start_poster(nursery, bus, tmp_path, FakeProver(), address="t0101")
    await run_until(chain, chain.chain.head.epoch + chain.chain.policy.proving_period + 10)
    posts = [m for ts in chain.chain.tipsets for m, r in zip(ts.messages, ts.receipts)
             if m.method == "SubmitWindowedPoSt" and r.exit_code == 0]
    assert posts and {m.sender for m in posts} == {"t0101"}
    assert chain.chain.miner_view(MINER).penalties == 0


async def test_an_address_that_is_not_the_miners_stops_the_poster_with_a_clear_error(
        bus, nursery, tmp_path, autojump_clock):
    from zqnode.nodes.poster.node import PosterStartError
    await start_chain(nursery, bus, tmp_path, sealed([1], control=["t0101"]))
    with pytest.raises(BaseException) as failed:
        await start_poster(nursery, bus, tmp_path, FakeProver(), address="t0999")
    assert isinstance(unwrap(failed.value), PosterStartError)
    assert str(unwrap(failed.value)) == ("[poster] address t0999 is neither the worker (t0100) nor "
                                         "a control address (t0101) of f01000")
