"""The sealing shell over the in-memory bus under a mock clock, against a real chain node
with the FAKE verifier and tasks whose fake proofs that verifier accepts: pledges and
deal pieces reach Proving, a killed shell goes on where it stopped without computing
anything twice or sending a message twice, a reorg past a PreCommit, task failures."""
import itertools
import logging

import msgspec
import pytest
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.core import Genesis
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.chain.policy import DEVNET
from zqnode.nodes.chain.verifiers import FAKE
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing import states as S
from zqnode.nodes.wire import sealing as W
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.node import SealingService
from tests.nodes.sealing.stand_ins import LocalTasks
from zqnode.proofs import cid, commp

_names = itertools.count()
MINER = 1000
HAPPY = ["StartCC", "Packed", "TicketReady", "PreCommit1Done", "PreCommit2Done", "PreCommitSent",
         "PreCommitLanded", "SeedReady", "Commit1Done", "CommitSent", "CommitLanded", "Finalized"]


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://sealing-{next(_names)}")).run)


@pytest.fixture
async def chain(nursery, bus, tmp_path):
    node = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"),
                                bus=BusConfig(address=bus)), ChainConfig(verifier="fake"),
                     clock=trio.current_time)
    await nursery.start(node.run)
    return node


@pytest.fixture
async def client(nursery, bus):
    return await nursery.start(Peer(name="cli-1", role="cli", register=False,
                                    cfg=BusConfig(address=bus)).run)


async def start_sealing(nursery, bus, tmp_path, tasks, **cfg):
    """A sealing service in its own cancel scope: cancelling it is a kill (nothing is
    flushed that was not committed)."""
    scfg = SealingConfig(**{"retry_base_s": 1.0, "retry_max_s": 8.0, "wait_deals_s": 5.0,
                            "storage": [str(tmp_path / "storage")], **cfg})
    svc = SealingService(tmp_path / "manager", scfg,
                         Peer(name="manager-1", role="manager", cfg=BusConfig(address=bus)), tasks,
                         own_peer=True, verify_seal=FAKE.verify_seal, clock=trio.current_time)
    scope = trio.CancelScope()

    async def run(task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await svc.run(task_status=task_status)
    await nursery.start(run)
    return svc, scope


async def until(pred, limit=2000):
    for _ in range(limit):
        if pred():
            return
        await trio.sleep(0.25)
    raise AssertionError("condition not reached")


def states(svc):
    return {n: s.state for n, s in svc.core.sectors.items()}


def landed(chain, method, number) -> list[str]:
    """Ids of the messages calling `method` for sector `number` that succeeded on chain."""
    from zqnode.nodes.chain.messages import decode_params
    return [m.id for ts in chain.chain.tipsets for m, r in zip(ts.messages, ts.receipts)
            if m.method == method and r.exit_code == 0
            and decode_params(m.method, m.params).sector_number == number]


async def test_pledged_sectors_reach_proving_and_each_task_runs_once(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks)
    with client.subscribe(W.TOPIC_SECTOR, kinds=[W.SealingSectorChanged]) as sub:
        r = await client.call("@manager", W.SealingPledge(count=2))
        assert r.numbers == [1, 2]
        await until(lambda: set(states(svc).values()) == {S.PROVING})
        published = []
        while len(published) < 22:             # 11 committed changes per sector
            ev = await sub.receive()
            if ev.body.sector.number == 1:
                assert ev.cause == "s-1000-1"
                published.append((ev.body.prev, ev.body.sector.state, ev.body.event))
            else:
                published.append(None)
    assert [p for p in published if p][-1] == (S.FINALIZE_SECTOR, S.PROVING, "Finalized")
    assert [p for p in published if p][0] == ("", S.GET_TICKET, "Packed")
    for n in (1, 2):
        assert chain.chain.sector(MINER, n) is not None
        assert [e.event for e in svc.store.log(n)] == HAPPY
        assert len(landed(chain, "PreCommitSector", n)) == len(landed(chain, "ProveCommitSector", n)) == 1
    assert {k: v for k, v in tasks.runs.items()} == {
        (t, n): 1 for t in ("PC1", "PC2", "C1", "FIN") for n in (1, 2)}
    assert tasks.results == {} and len(tasks.consumed) == 8     # every result consumed
    listing = await client.call("@manager", W.SealingList(states=[S.PROVING]))
    assert [s.number for s in listing.sectors] == [1, 2] and listing.head == chain.chain.head.epoch
    status = await client.call("@manager", W.SealingStatus(number=1, log=True))
    assert status.info["state"] == S.PROVING and status.info["cause"] == "s-1000-1"
    assert [e["event"] for e in status.log] == HAPPY and svc.refused == 0


@pytest.mark.parametrize("kill_in", [S.PRE_COMMIT1, S.PRE_COMMIT_WAIT, S.WAIT_SEED, S.COMMITTING,
                                     S.COMMIT_WAIT, S.FINALIZE_SECTOR])
async def test_killed_in_any_state_it_goes_on_without_sealing_or_sending_twice(
        nursery, bus, chain, client, tmp_path, autojump_clock, kill_in):
    tasks = LocalTasks(tmp_path / "tasks")
    tasks.delays = {"PC1": 3.0, "PC2": 2.0, "C1": 2.0, "FIN": 2.0}
    svc, scope = await start_sealing(nursery, bus, tmp_path, tasks)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc)[1] == kill_in)
    scope.cancel()                                        # kill -9: nothing more is committed
    await trio.sleep(3)
    svc2, _ = await start_sealing(nursery, bus, tmp_path, tasks)
    await until(lambda: states(svc2)[1] == S.PROVING)
    assert chain.chain.sector(MINER, 1) is not None
    assert len(landed(chain, "PreCommitSector", 1)) == len(landed(chain, "ProveCommitSector", 1)) == 1
    assert tasks.runs[("PC1", 1)] == tasks.runs[("PC2", 1)] == tasks.runs[("C1", 1)] == 1
    assert [e.event for e in svc2.store.log(1)] == HAPPY
    sent = [m for m in svc2.store.messages(1) if m.status == "sent"]
    assert len(sent) == 2 and svc2.refused == 0


async def test_a_reorg_past_the_precommit_sends_the_sector_back_and_it_still_lands(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, seed_confidence=3)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc)[1] == S.WAIT_SEED)
    s = svc.core.sectors[1]
    (first,) = landed(chain, "PreCommitSector", 1)
    depth = chain.chain.head.epoch - s.precommit_epoch + 1        # the PreCommit's tipset goes
    assert chain.chain.head.epoch - depth >= s.ticket_epoch       # the ticket's stays
    await BusChainAPI(client).reorg(depth)
    assert chain.chain.precommit(MINER, 1) is None
    await until(lambda: states(svc)[1] == S.PROVING)
    events = [e.event for e in svc.store.log(1)]
    assert "ChainPreCommitFailed" in events and "ChainChecked" in events
    assert events[-3:] == ["CommitSent", "CommitLanded", "Finalized"]
    assert landed(chain, "PreCommitSector", 1) == [first]        # the same message landed again
    assert chain.chain.lookup(first).epoch > s.precommit_epoch
    assert chain.chain.sector(MINER, 1) is not None and tasks.runs[("PC1", 1)] == 1


async def test_task_failures_back_off_and_then_succeed(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    tasks.fail("PC2", "out of memory", "out of memory")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc)[1] == S.PROVING)
    log = svc.store.log(1)
    failed = [e for e in log if e.event == "TaskFailed"]
    assert [(e.state, e.note) for e in failed] == [
        (S.SEAL_PRE_COMMIT2_FAILED, "error 1 of 8: retry in 1s"),
        (S.SEAL_PRE_COMMIT2_FAILED, "error 2 of 8: retry in 2s")]
    assert tasks.runs[("PC2", 1)] == 3 and tasks.runs[("PC1", 1)] == 1
    assert svc.core.sectors[1].pc2_fails == 2 and svc.core.sectors[1].retries == 0


async def test_deal_pieces_are_packed_sealed_and_their_commd_is_on_chain(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    # the mock clock jumps while CommP runs in a thread: a long wait keeps the sector open
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, wait_deals_s=600.0)
    pieces = [bytes([7]) * 300, bytes([9]) * 100]
    out = [await client.call("@manager", W.SealingAddPiece(name=f"p{i}"), buffers=[p])
           for i, p in enumerate(pieces)]
    assert [(a.sector, a.padded_size, a.offset) for a in out] == [(1, 512, 0), (1, 128, 512)]
    await until(lambda: states(svc)[1] == S.PROVING, limit=10_000)
    want = commp.commd([(512, commp.commp(pieces[0]).commitment),
                        (128, commp.commp(pieces[1]).commitment)], 2048)
    assert chain.chain.sector(MINER, 1).unsealed_cid == cid.piece_cid_v1(want)
    s = svc.core.sectors[1]
    assert [(p.offset, p.padded_size, p.filler) for p in s.pieces] == [
        (0, 512, False), (512, 128, False), (640, 128, True), (768, 256, True), (1024, 1024, True)]
    with pytest.raises(RemoteError, match="at least 65 payload bytes, got 10"):
        await client.call("@manager", W.SealingAddPiece(), buffers=[b"x" * 10])


async def test_operators_resume_and_remove_and_bad_requests_are_refused(
        nursery, bus, chain, client, tmp_path, autojump_clock, caplog):
    tasks = LocalTasks(tmp_path / "tasks")
    tasks.fail("PC1", *["disk gone"] * 3)
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, max_retries=2)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: svc.core.sectors[1].paused)
    s = svc.core.sectors[1]
    assert (s.state, s.last_error, s.retries) == (S.SEAL_PRE_COMMIT1_FAILED, "disk gone", 3)
    alerts = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert alerts == ["sector 1: PreCommit1 -> SealPreCommit1Failed (TaskFailed): paused after 3 errors "
                      "in a row: disk gone; waiting for an operator: zqnode sectors resume|rebuild|remove 1"]
    r = await client.call("@manager", W.SealingResume(number=1))
    assert (r.state, r.paused) == (S.PRE_COMMIT1, False)
    await until(lambda: states(svc)[1] == S.PROVING)
    for bad, match in ((W.SealingResume(number=1, state="Nowhere"), "no state 'Nowhere'"),
                       (W.SealingStatus(number=7), "no sector 7"),
                       (W.SealingList(states=["Sealing"]), "no state Sealing"),
                       (W.SealingPledge(count=0), "1..1000")):
        with pytest.raises(RemoteError, match=match):
            await client.call("@manager", bad)
    (tmp_path / "storage" / "s-1").mkdir(parents=True)
    (tmp_path / "storage" / "s-1" / "sector.json").write_text('{"miner": 1000, "sector": 1}')
    r = await client.call("@manager", W.SealingRemove(number=1))
    assert r.state == S.REMOVING
    await until(lambda: states(svc)[1] == S.REMOVED)
    assert not (tmp_path / "storage" / "s-1").exists()


async def test_a_precommit_the_chain_forgot_is_sent_again(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    real_push, pushed = chain.chain.push, []

    def forgetful_push(msg, uuid=""):          # the pool loses the first PreCommitSector
        if msg.method == "PreCommitSector" and not pushed:
            lost = msgspec.structs.replace(msg, nonce=chain.chain.next_nonce(msg.sender))
            pushed.append(lost.id)
            return lost
        out = real_push(msg, uuid)
        if msg.method == "PreCommitSector":
            pushed.append(out.id)
        return out
    chain.chain.push = forgetful_push
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc)[1] == S.PROVING)
    events = [e.event for e in svc.store.log(1)]
    assert events[5:12] == ["PreCommitSent", "ChainPreCommitFailed", "Wake", "ChainChecked",
                            "RetryPreCommit", "PreCommitSent", "PreCommitLanded"]
    # sent again: the same message (its nonce was never used), and it landed once
    assert len(pushed) == 2 and pushed[0] == pushed[1]
    assert landed(chain, "PreCommitSector", 1) == pushed[:1]
    assert tasks.runs[("PC1", 1)] == 1


async def test_a_terminated_sector_leaves_the_chain_and_then_its_files_go(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks)
    await client.call("@manager", W.SealingPledge(count=2))
    await until(lambda: set(states(svc).values()) == {S.PROVING})
    with pytest.raises(RemoteError, match="no sector 3"):
        await client.call("@manager", W.SealingTerminate(number=3))
    r = await client.call("@manager", W.SealingTerminate(number=1))
    assert r.state == S.TERMINATING
    await until(lambda: states(svc)[1] == S.REMOVED)
    assert chain.chain.sector(MINER, 1) is None and chain.chain.sector(MINER, 2) is not None
    assert chain.chain.miner_view(MINER).terminated == 1
    sent = [m for ts in chain.chain.tipsets for m, rc in zip(ts.messages, ts.receipts)
            if m.method == "TerminateSectors" and rc.exit_code == 0]
    assert len(sent) == 1
    events = [e.event for e in svc.store.log(1)]
    tail = events[len(HAPPY):]           # it waited for a batch (a deadline too close defers it)
    assert tail[0] == "Terminate" and tail[-4:] == ["BatchFormed", "TerminateSent", "Terminated", "SectorRemoved"]
    assert set(tail[1:-4]) <= {"Wake", "BatchFormed", "TerminateDeferred"}
    assert tasks.dropped == [1] and svc.refused == 0


def landed_methods(chain, method) -> list:
    return [m for ts in chain.chain.tipsets for m, rc in zip(ts.messages, ts.receipts)
            if m.method == method and rc.exit_code == 0]


BATCH_HAPPY = (HAPPY[:5] + ["PreCommitBatch", "BatchFormed", "PreCommitBatchSent"] + HAPPY[6:9]
               + ["CommitAggregate", "BatchFormed", "CommitAggregateSent"] + HAPPY[10:])


@pytest.mark.parametrize("kill_in", [None, S.PRE_COMMIT_BATCH_WAIT, S.COMMIT_AGGREGATE_WAIT])
async def test_batches_send_one_message_for_four_sectors_and_a_kill_sends_nothing_twice(
        nursery, bus, chain, client, tmp_path, autojump_clock, kill_in):
    tasks = LocalTasks(tmp_path / "tasks")
    batch = dict(batch_precommits=True, max_precommit_batch=4, precommit_batch_wait_s=600.0,
                 precommit_batch_slack=50,              # the devnet's tickets live 200 epochs
                 aggregate_commits=True, max_commit_batch=4, commit_batch_wait_s=600.0,
                 commit_batch_slack=50)
    svc, scope = await start_sealing(nursery, bus, tmp_path, tasks, **batch)
    await client.call("@manager", W.SealingPledge(count=4))
    if kill_in:
        await until(lambda: kill_in in states(svc).values())
        scope.cancel()                                    # kill -9 between send and land
        await trio.sleep(3)
        svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, **batch)
    await until(lambda: set(states(svc).values()) == {S.PROVING})
    (msg,) = landed_methods(chain, "PreCommitSectorBatch2")
    assert sorted(s.sector_number for s in M.decode_params(msg.method, msg.params).sectors) == [1, 2, 3, 4]
    (agg,) = landed_methods(chain, "ProveCommitSectors3")
    p = M.decode_params(agg.method, agg.params)
    assert [a.sector_number for a in p.sector_activations] == [1, 2, 3, 4] and p.aggregate_proof
    assert landed_methods(chain, "PreCommitSector") == landed_methods(chain, "ProveCommitSector") == []
    assert all(chain.chain.sector(MINER, n) is not None for n in (1, 2, 3, 4))
    assert [e.event for e in svc.store.log(1)] == BATCH_HAPPY and svc.refused == 0


async def test_a_pledge_target_keeps_the_cluster_busy_and_the_limit_refuses_more(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, pledge_target=2, max_sealing_sectors=2)
    await until(lambda: sorted(svc.core.sectors) == [1, 2])                # pledged at start
    with pytest.raises(RemoteError, match="2 sectors are sealing and max_sealing_sectors is 2"):
        await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc).get(1) == S.PROVING and len(svc.core.sectors) >= 3)
    assert svc.core.sealing_count() == 2 and svc.refused == 0             # one more replaced it


async def test_a_proven_sector_is_extended_and_a_reduction_is_refused_with_the_actors_words(
        nursery, bus, chain, client, tmp_path, autojump_clock):
    tasks = LocalTasks(tmp_path / "tasks")
    svc, _ = await start_sealing(nursery, bus, tmp_path, tasks, sector_lifetime=1000)
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: states(svc)[1] == S.PROVING)
    s = chain.chain.sector(MINER, 1)
    assert s.expiration == svc.core.sectors[1].ticket_epoch + 1000
    with pytest.raises(RemoteError, match=f"the chain would refuse it: cannot reduce sector "
                                          f"expiration to {s.expiration - 1} from {s.expiration}"):
        await client.call("@manager", W.SealingExtend(number=1, expiration=s.expiration - 1))
    r = await client.call("@manager", W.SealingExtend(number=1, expiration=s.expiration + 500))
    again = await client.call("@manager", W.SealingExtend(number=1, expiration=s.expiration + 500))
    assert again.msg_id == r.msg_id                                   # sent once
    await until(lambda: chain.chain.sector(MINER, 1).expiration == s.expiration + 500)
    with pytest.raises(RemoteError, match="no sector 7"):
        await client.call("@manager", W.SealingExtend(number=7, expiration=1))


async def test_a_worker_without_funds_waits_in_precommit_failed_and_goes_on_once_funded(
        nursery, bus, tmp_path, autojump_clock):
    poor = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"), bus=BusConfig(address=bus)),
                     ChainConfig(verifier="fake", genesis=Genesis(balance=0, miner_balance=0)),
                     clock=trio.current_time)
    await nursery.start(poor.run)
    admin = BusChainAPI(await nursery.start(Peer(name="admin-1", role="admin", cfg=BusConfig(address=bus)).run))
    svc, _ = await start_sealing(nursery, bus, tmp_path, LocalTasks(tmp_path / "tasks"))
    await admin.peer.call("@manager", W.SealingPledge(count=1))
    sector = lambda: svc.core.sectors[1]                            # noqa: E731
    await until(lambda: "PreCommitSector refused: not enough funds in t0100: 0 FIL" in sector().last_error)
    assert sector().state == S.PRE_COMMIT_FAILED and poor.chain.pool == {}      # nothing sent
    await admin.fund("t0100", 5 * 10 ** 7)          # 0.05 FIL: the deposit and gas, not the pledge
    await until(lambda: "ProveCommitSector refused: not enough funds" in sector().last_error)
    assert sector().state == S.COMMIT_FAILED
    await admin.fund("t0100", 10 ** 9)              # the worker sends the pledge (as Lotus by default)
    await until(lambda: sector().state == S.PROVING)
    m = poor.chain.miner_view(MINER)
    assert (m.initial_pledge, m.precommit_deposits, m.balance) == (DEVNET.initial_pledge, 0, DEVNET.initial_pledge)
    assert len(landed(poor, "PreCommitSector", 1)) == len(landed(poor, "ProveCommitSector", 1)) == 1
