"""The sealing shell with real proofs (the worker's task table in threads) against a
chain with the real verifiers, in real time (0.1 s epochs): a deal sector is sealed and
proven on chain, unsealed back to its piece, its replica deleted and rebuilt with the
same ticket (the rebuilt proof verified against the chain), then unsealed again; a
sector whose ticket expired after PreCommit2 is sealed again with a new one."""
import itertools

import pytest
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain.core import Genesis, MinerSpec
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.sealing import states as S
from zqnode.nodes.wire import sealing as W
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.node import SealingService
from tests.nodes.sealing.stand_ins import LocalTasks
from zqnode.proofs import cid

_names = itertools.count()
MINER = 1000


async def until(pred, seconds=60.0):
    with trio.fail_after(seconds):
        while not pred():
            await trio.sleep(0.05)


@pytest.fixture
async def cluster(nursery, tmp_path):
    return await start_cluster(nursery, tmp_path, epoch_seconds=0.1)


async def start_cluster(nursery, tmp_path, *, epoch_seconds, seal_proof=5):
    bus = await nursery.start(MemoryHub(BusConfig(address=f"mem://real-{next(_names)}")).run)
    chain = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"),
                                 bus=BusConfig(address=bus)),
                      ChainConfig(verifier="proofs", epoch_seconds=epoch_seconds,
                                  genesis=Genesis(miners=[MinerSpec(actor_id=MINER, seal_proof=seal_proof)])))
    await nursery.start(chain.run)
    tasks = LocalTasks(tmp_path / "sectors", fake=False)
    scfg = SealingConfig(retry_base_s=0.2, retry_max_s=1.0, wait_deals_s=0.5,
                         storage=[str(tmp_path / "sectors")])
    svc = SealingService(tmp_path / "manager", scfg,
                         Peer(name="manager-1", role="manager", cfg=BusConfig(address=bus)), tasks,
                         own_peer=True)
    await nursery.start(svc.run)
    client = await nursery.start(Peer(name="cli-1", role="cli", register=False,
                                      cfg=BusConfig(address=bus)).run)
    return chain, svc, tasks, client


async def test_a_deal_sector_is_sealed_unsealed_rebuilt_and_unsealed_again(cluster, tmp_path):
    chain, svc, tasks, client = cluster
    piece = bytes(range(251)) * 4                                 # 1004 bytes: a 1 KiB piece
    r = await client.call("@manager", W.SealingAddPiece(name="p"), buffers=[piece])
    assert (r.sector, r.padded_size, r.offset) == (1, 1024, 0)
    await until(lambda: svc.core.sectors[1].state == S.PROVING)
    on_chain = chain.chain.sector(MINER, 1)
    assert on_chain.sealed_cid == cid.sealed_cid(svc.core.sectors[1].comm_r)

    out = tmp_path / "piece.out"
    r = await client.call("@manager", W.SealingUnseal(number=1, out=str(out), piece=0))
    assert r.state == S.UNSEALING
    await until(lambda: svc.core.sectors[1].state == S.PROVING)
    assert out.read_bytes() == piece

    sector_dir = tasks.sector_dir(MINER, 1)
    (sector_dir / "sealed").unlink()                              # the replica is lost
    r = await client.call("@manager", W.SealingRebuild(number=1))
    assert r.state == S.REBUILD_CLEAN
    await until(lambda: svc.core.sectors[1].state == S.PROVING)
    events = [e.event for e in svc.store.log(1)]
    assert events[events.index("Rebuild"):] == [
        "Rebuild", "Cleaned", "PieceAdded", "PiecesReady", "PreCommit1Done", "PreCommit2Done",
        "Commit1Done", "ProofChecked", "Finalized"]
    assert (sector_dir / "sealed").exists()
    assert tasks.runs[("PC1", 1)] == 2 and tasks.runs[("AP", 1)] == 2

    out.unlink()
    await client.call("@manager", W.SealingUnseal(number=1, out=str(out), piece=0))
    await until(lambda: out.exists() and svc.core.sectors[1].state == S.PROVING)
    assert out.read_bytes() == piece and svc.refused == 0


async def test_a_ticket_that_expired_after_precommit2_seals_again_and_precommits_once(nursery, tmp_path):
    # the chaos run's sector 4: PreCommit2 outlived its ticket (200 epochs on the devnet);
    # a new ticket must run PreCommit1 again on the worker's files, then seal and land once
    chain, svc, tasks, client = await start_cluster(nursery, tmp_path, epoch_seconds=0.02)
    tasks.gates["PC2"] = trio.Event()
    await client.call("@manager", W.SealingPledge(count=1))
    await until(lambda: svc.core.sectors[1].state == S.PRE_COMMIT2)
    old = svc.core.sectors[1].ticket_epoch
    await until(lambda: chain.chain.head.epoch > old + chain.chain.policy.max_ticket_age)
    tasks.gates["PC2"].set()
    await until(lambda: svc.core.sectors[1].state == S.PROVING)
    log = [(e.event, e.state) for e in svc.store.log(1)]
    expired = log.index(("TicketExpired", S.GET_TICKET))
    assert log[expired - 1:expired + 3] == [
        ("PreCommit2Done", S.PRE_COMMITTING), ("TicketExpired", S.GET_TICKET),
        ("TicketReady", S.PRE_COMMIT1), ("PreCommit1Done", S.PRE_COMMIT2)]
    assert "TaskFailed" not in [e for e, _ in log]
    s = svc.core.sectors[1]
    assert s.ticket_epoch > old + chain.chain.policy.max_ticket_age - 2
    assert tasks.runs[("PC1", 1)] == tasks.runs[("PC2", 1)] == 2 and tasks.runs[("C1", 1)] == 1
    precommits = [m for ts in chain.chain.tipsets for m, r in zip(ts.messages, ts.receipts)
                  if m.method == "PreCommitSector" and r.exit_code == 0]
    assert len(precommits) == 1
    assert chain.chain.sector(MINER, 1).sealed_cid == cid.sealed_cid(s.comm_r)   # proven with it
    assert svc.refused == 0


async def test_a_synthetic_porep_miner_seals_with_synthetic_proofs_and_unseals(nursery, tmp_path):
    # StackedDrg2KiBV1_1_Feat_SyntheticPoRep: PC2 proves the synthetic challenges and drops
    # the layers, C1 picks the seed's, the chain's verifier accepts them; unseal relabels.
    chain, svc, tasks, client = await start_cluster(nursery, tmp_path, epoch_seconds=0.1, seal_proof=10)
    piece = bytes(range(200)) * 5
    await client.call("@manager", W.SealingAddPiece(name="p"), buffers=[piece])
    await until(lambda: svc.core.sectors[1].state == S.PROVING)
    assert svc.core.sectors[1].seal_proof == 10
    assert chain.chain.sector(MINER, 1).sealed_cid == cid.sealed_cid(svc.core.sectors[1].comm_r)
    out = tmp_path / "piece.out"
    await client.call("@manager", W.SealingUnseal(number=1, out=str(out), piece=0))
    await until(lambda: out.exists() and svc.core.sectors[1].state == S.PROVING)
    assert out.read_bytes() == piece and svc.refused == 0
