"""The poster's parts: its store, provers, sector checker, storage locator and config."""
import json
import shutil
import sqlite3
import threading

import pytest

from zqnode.nodes.chain.verifiers import FAKE
from zqnode.nodes.config import ConfigError, load
from zqnode.nodes.poster.checker import SectorChecker, StorageLocator, check_sector_files
from zqnode.nodes.sector_dirs import sector_dir_name
from zqnode.nodes.poster.config import PosterConfig, ProverConfig
from zqnode.nodes.poster.events import DeadlineOutcome, PartitionProof, SkippedSector, StoreProofs
from zqnode.nodes.poster.prover import (FakeProver, LocalProver, PartitionInput, ProveRequest, ProverError,
                                        SectorInput, make_prover)
from zqnode.nodes.poster.store import PosterStore, StoreError
from tests.nodes.poster.stand_ins import prove_echo

RAND = bytes(range(32))


# -- store ------------------------------------------------------------------------------------------

def store_proofs(batch, open_=40, rand=RAND, parts=(0,)):
    return StoreProofs(cause="r", miner=1000, deadline=5, open=open_, randomness=rand, batch=batch,
                       partitions=[PartitionProof(index=i, proof=b"p%d" % i, proven=[2 * i + 1])
                                   for i in parts],
                       skipped=[SkippedSector(2, "gone")])


def add(store, msg_id, batch, open_=40, rand=RAND, kind="post"):
    store.add_message(msg_id=msg_id, kind=kind, miner=1000, deadline=5, open_=open_, randomness=rand,
                      batch=batch, nonce=7, body=b"msg")


def test_store_keeps_proofs_and_latest_messages_across_reopening(tmp_path):
    path = tmp_path / "poster.sqlite"
    s = PosterStore(path)
    s.save_proofs(store_proofs(0, parts=(0, 1)))
    s.save_proofs(store_proofs(1, parts=(2,)))
    s.save_proofs(store_proofs(0, rand=bytes(32)))               # another randomness
    add(s, "m1", 0)
    add(s, "m2", 0)
    s.set_status("m2", "refused", "wrong nonce")                 # refused pushes do not count
    add(s, "f1", -1, kind="faults")
    s.close()
    s = PosterStore(path)
    assert s.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = s.stored_batches(1000, 40, RAND)
    assert [(r.batch, [p.index for p in r.partitions], r.msg_id) for r in rows] == [
        (0, [0, 1], "m1"), (1, [2], "")]
    assert rows[0].partitions[1] == PartitionProof(index=1, proof=b"p1", proven=[3])
    assert rows[0].skipped == [SkippedSector(2, "gone")]
    assert s.stored_batches(1000, 48, RAND) == [] and len(s.stored_batches(1000, 40, bytes(32))) == 1
    assert [(m.msg_id, m.kind, m.status, m.reason) for m in s.messages(1000, 40)] == [
        ("m1", "post", "pushed", ""), ("m2", "post", "refused", "wrong nonce"),
        ("f1", "faults", "pushed", "")]
    s.set_status("m1", "landed")
    assert s.messages(1000)[0].status == "landed"
    with pytest.raises(StoreError, match="unknown message status 'lost'"):
        s.set_status("m1", "lost")
    with pytest.raises(StoreError, match="no stored message nope"):
        s.set_status("nope", "landed")
    with pytest.raises(sqlite3.IntegrityError):
        add(s, "m1", 3)                                           # a message id is stored once
    s.prune(before_open=41)
    assert s.stored_batches(1000, 40, RAND) == [] and s.messages(1000) == []


def test_store_outcomes_newest_first(tmp_path):
    s = PosterStore(tmp_path / "p.sqlite")
    for open_, index, status in ((40, 5, "proven"), (48, 6, "empty"), (424, 5, "missed")):
        s.save_outcome(DeadlineOutcome(miner=1000, index=index, open=open_, close=open_ + 8, status=status))
    assert [(o.open, o.status) for o in s.outcomes(1000)] == [(424, "missed"), (48, "empty"), (40, "proven")]
    assert [o.open for o in s.outcomes(1000, deadline=5, limit=1)] == [424]
    assert s.outcomes(1001) == []


# -- provers ------------------------------------------------------------------------------------------

def request(rand=RAND, parts=((0, (1, 2)), (3, (7,)))) -> ProveRequest:
    return ProveRequest(miner=1000, seal_proof=5, randomness=rand, partitions=[
        PartitionInput(index=i, sectors=[SectorInput(number=n, comm_r=bytes([n]) * 32, path=f"/s/{n}")
                                         for n in numbers]) for i, numbers in parts])


async def test_fake_prover_makes_proofs_the_fake_verifier_accepts():
    proofs = await FakeProver().prove(request())
    assert [(p.index, p.proven, p.skipped) for p in proofs] == [(0, [1, 2], []), (3, [7], [])]
    assert FAKE.verify_window_post(seal_proof=5, randomness=RAND, proof=proofs[0].proof,
                                   sectors=[(1, bytes([1]) * 32), (2, bytes([2]) * 32)])
    assert not FAKE.verify_window_post(seal_proof=5, randomness=bytes(32), proof=proofs[0].proof,
                                       sectors=[(1, bytes([1]) * 32), (2, bytes([2]) * 32)])
    proofs = await FakeProver(skip={2: "no replica"}).prove(request())
    assert (proofs[0].proof, proofs[0].proven) == (b"", [1])
    assert proofs[0].skipped == [SkippedSector(2, "no replica")]
    with pytest.raises(ProverError, match="GPU lost"):
        await FakeProver(fail=lambda req: "GPU lost").prove(request())


async def test_make_prover_by_kind():
    assert [type(make_prover(ProverConfig(kind=k))).__name__ for k in ("local", "fake", "scheduler")] == [
        "LocalProver", "FakeProver", "SchedulerProver"]
    assert make_prover(ProverConfig(mode="process")).name == "local-process"


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_local_prover_runs_the_proving_off_the_event_loop(mode):
    prover = LocalProver(mode=mode, backend="cpu", verify=False, prove_fn=prove_echo)
    try:
        proofs = await prover.prove(request())
        assert proofs == [PartitionProof(index=0, proof=b"cpu|\x00|\x00\x01|/s/1|/s/2", proven=[1, 2]),
                          PartitionProof(index=3, proof=b"cpu|\x00|\x00\x01|/s/7", proven=[7])]
        with pytest.raises(ValueError, match="the stand-in refuses this randomness"):
            await prover.prove(request(rand=b"\xff" * 32))
    finally:
        prover.close()


def test_local_prover_mode_is_checked():
    with pytest.raises(ValueError, match="mode must be thread or process, not 'fork'"):
        LocalProver(mode="fork")


# -- sector checks ---------------------------------------------------------------------------------------

def sectors(*numbers):
    return [SectorInput(number=n, comm_r=bytes(32), path=f"/s/{n}") for n in numbers]


async def test_checker_reports_failures_with_reasons_and_a_timeout_per_sector():
    release = threading.Event()

    def check(seal_proof, s):
        if s.number == 3:
            release.wait(10)                    # storage that hangs
        if s.number == 4:
            raise RuntimeError("boom")
        return "replica too short" if s.number == 2 else ""
    try:
        failed = await SectorChecker(check, timeout_s=0.3, parallel=2).check(5, sectors(1, 2, 3, 4, 5))
    finally:
        release.set()
    assert failed == {2: "replica too short", 3: "check timed out after 0.3s",
                      4: "check failed: RuntimeError: boom"}
    with pytest.raises(ValueError, match="timeout_s > 0 and parallel >= 1"):
        SectorChecker(check, timeout_s=0)


def test_the_files_check_names_a_missing_location(tmp_path):
    assert check_sector_files(5, SectorInput(number=1, comm_r=bytes(32))) == \
        "no storage path is known for this sector"
    gone = tmp_path / "s-1"
    assert check_sector_files(5, SectorInput(number=1, comm_r=bytes(32), path=str(gone))) == \
        f"sector directory {gone} is missing"


def test_storage_locator_finds_sector_directories(tmp_path):
    for miner, n in ((1000, 1), (1000, 2), (1001, 1)):
        d = tmp_path / "a" / f"s-t0{miner}-{n}"
        d.mkdir(parents=True)
        (d / "sector.json").write_text(json.dumps({"miner": miner, "sector": n, "seal_proof": 5}))
    (tmp_path / "a" / "junk").mkdir()
    (tmp_path / "a" / "junk" / "sector.json").write_text("{not json")
    loc = StorageLocator([str(tmp_path / "a"), str(tmp_path / "missing")], rescan_s=0)
    assert loc.locate(1000, 2) == str(tmp_path / "a" / "s-t01000-2")
    assert loc.locate(1001, 1) == str(tmp_path / "a" / "s-t01001-1")
    assert loc.locate(1000, 3) == ""
    d = tmp_path / "a" / "late"
    d.mkdir()
    (d / "sector.json").write_text(json.dumps({"miner": 1000, "sector": 3}))
    assert loc.locate(1000, 3) == str(d)                  # a miss scans again
    slow = StorageLocator([str(tmp_path / "a")], rescan_s=3600)
    assert slow.locate(1000, 9) == "" and slow.scan() == 4


def test_storage_locator_prefers_the_finalized_replica_and_follows_a_rebuild(tmp_path):
    """Sealing workers keep the copies they fetched: the finalized directory is the
    replica. One that goes away, or is not finalized yet, makes the roots scanned again."""
    def sector_dir(root: str, stage: str):
        d = tmp_path / root / "s-t01000-7"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sector.json").write_text(json.dumps({"miner": 1000, "sector": 7, "stage": stage}))
        return d

    fetched = sector_dir("w1", "pc1")
    replica = sector_dir("w2", "finalized")
    sector_dir("w3", "pc2")
    loc = StorageLocator([str(tmp_path / r) for r in ("w1", "w2", "w3")], rescan_s=0)
    assert loc.locate(1000, 7) == str(replica)
    # a rebuild: every copy dropped, sealed again (pc1 first), finalized on another worker
    for d in tmp_path.glob("w*/s-t01000-7"):
        shutil.rmtree(d)
    assert loc.locate(1000, 7) == ""
    sector_dir("w1", "pc1")
    assert loc.locate(1000, 7) == str(fetched)
    rebuilt = sector_dir("w3", "finalized")
    assert loc.locate(1000, 7) == str(rebuilt)
    slow = StorageLocator([str(tmp_path / "w1"), str(tmp_path / "w3")], rescan_s=3600)
    assert slow.locate(1000, 7) == str(rebuilt)
    shutil.rmtree(rebuilt)
    assert slow.locate(1000, 7) == ""                     # gone; scanned again no sooner than rescan_s
    sector_dir("w1", "finalized")
    assert slow.locate(1000, 7) == ""                     # under another name: the next scan finds it


def test_storage_locator_finds_a_sector_finalized_a_moment_ago_where_workers_put_it(tmp_path):
    """The chaos run's case: the roots were scanned just before the sector was finalized;
    its check must not wait for the next scan, or the poster declares it faulty."""
    roots = [tmp_path / "w1" / "sectors", tmp_path / "w2" / "sectors"]

    def put(root, number: int, stage: str):
        d = root / sector_dir_name(1000, number)
        d.mkdir(parents=True, exist_ok=True)
        (d / "sector.json").write_text(json.dumps({"miner": 1000, "sector": number, "stage": stage}))
        return d

    put(roots[0], 1, "finalized")
    loc = StorageLocator([str(r) for r in roots], rescan_s=3600)
    assert loc.scan() == 1 and loc.locate(1000, 2) == ""
    put(roots[0], 2, "pc1")                               # PC1 ran on w1 (a copy stays)
    sealed = put(roots[1], 2, "finalized")                # PC2 and finalize on w2
    assert loc.locate(1000, 2) == str(sealed)


# -- config ----------------------------------------------------------------------------------------------

def test_poster_section_of_a_node_config(tmp_path):
    f = tmp_path / "poster.toml"
    f.write_text("[poster]\nminers = [1000]\nchallenge_confirmations = 5\nstorage = ['/srv/sectors']\n"
                 "[poster.prover]\nkind = 'local'\nmode = 'process'\nparallel = 2\n")
    cfg = load(str(f), role="poster")
    assert (cfg.poster.miners, cfg.poster.challenge_confirmations, cfg.poster.storage) == (
        [1000], 5, ["/srv/sectors"])
    assert (cfg.poster.prover.mode, cfg.poster.prover.parallel) == ("process", 2)
    assert cfg.poster.submit_after_open == 0
    for text, message in (("[poster]\nmessage_confidence = -1\n", "message_confidence must be >= 0"),
                          ("[poster]\nconfirmations = 1\n", "confirmations"),
                          ("[poster.prover]\nkind = 'gpu-farm'\n",
                           "kind must be one of local, fake, scheduler"),
                          ("[poster]\nprove_retry_s = 10\nprove_retry_max_s = 5\n",
                           "must be >= prove_retry_s"),
                          ("[poster]\ncheck_timeout_s = 0\n", "check_timeout_s must be > 0")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load(str(f), role="poster")
    assert PosterConfig().prover == ProverConfig()


