"""The real task table (proofs/) on a 2 KiB sector, called as the worker's task process
calls it: a sector sealed stage by stage verifies, and stages run again after a crash
give the same results without redoing what is recorded."""
from pathlib import Path

import pytest

from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.sealing import TASKS
from zqnode.nodes.worker.task import TaskContext, TaskInput, execute
from zqnode.proofs.porep import verify_seal
from zqnode.proofs.sector import load_meta

TICKET, SEED = bytes(range(32)), bytes(range(32, 64))


def ctx(tmp_path, number=3) -> TaskContext:
    return TaskContext(miner=1000, number=number, sector_size=2048,
                       sector_dir=tmp_path / "sectors" / f"s-1000-{number}", repo=tmp_path,
                       backend="cpu", parent_cache=str(tmp_path / "parents"))


def test_a_sector_sealed_through_the_table_verifies_and_reruns_are_harmless(tmp_path):
    c = ctx(tmp_path)
    piece = bytes(range(256)) * 7 + b"x" * 100                    # 1892 bytes: one 2 KiB piece
    ap = TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece))
    assert (ap.payload_size, ap.padded_size, ap.offset) == (1892, 2048, 0)
    assert TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece)) == ap          # found, not re-added
    assert len(load_meta(c.sector_dir).pieces) == 1
    with pytest.raises(ValueError, match="piece 2 comes too early"):
        TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece, index=2))
    pc1 = TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=TICKET))
    layer = c.sector_dir / "cache" / "sc-02-data-layer-1.dat"
    stamp = layer.stat().st_mtime_ns
    assert TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=TICKET)) == pc1     # recorded
    assert layer.stat().st_mtime_ns == stamp
    pc2 = TASKS["PC2"](c, P.PC2Params())
    assert pc2.comm_d == pc1.comm_d and TASKS["PC2"](c, P.PC2Params()) == pc2   # same again
    c1 = TASKS["C1"](c, P.C1Params(seed=SEED))
    assert verify_seal(seal_proof=5, miner=1000, sector=3, ticket=TICKET, seed=SEED,
                       comm_d=pc2.comm_d, comm_r=pc2.comm_r, proof=c1.proof)
    assert not verify_seal(seal_proof=5, miner=1000, sector=4, ticket=TICKET, seed=SEED,
                           comm_d=pc2.comm_d, comm_r=pc2.comm_r, proof=c1.proof)
    wdp = TASKS["WDP"](c, P.WDPParams(seal_proof=5, randomness=bytes(32), sectors=[(3, pc2.comm_r)]))
    assert [p.sectors for p in wdp.partitions] == [[(3, pc2.comm_r)]] and wdp.skipped == []
    fin = TASKS["FIN"](c, P.FINParams())
    assert "unsealed" in fin.removed and TASKS["FIN"](c, P.FINParams()).removed == []
    assert TASKS["UNS"](c, P.UNSParams(piece=0)).data == piece


def test_execute_turns_a_stage_error_into_a_failed_output(tmp_path):
    c = ctx(tmp_path, 9)
    inp = TaskInput(table="zqnode.nodes.worker.sealing", task="PC2", work_id="w", call_id="c", worker="w1",
                    miner=1000, number=9, sector_size=2048, sector_dir=str(c.sector_dir),
                    repo=str(tmp_path), params=P.encode(P.PC2Params()), backend="cpu")
    out = execute(inp)
    assert not out.ok and out.error.startswith("SectorError:") and "sector.json" in out.error
    unknown = execute(TaskInput(**{**{f: getattr(inp, f) for f in inp.__struct_fields__}, "task": "GET"}))
    assert not unknown.ok and unknown.error == "task type GET is not in zqnode.nodes.worker.sealing"
    assert not Path(c.sector_dir).exists()


def test_a_new_ticket_after_precommit2_runs_precommit1_again_and_the_old_replica_is_refused(tmp_path):
    # the chaos run's sector 4: PC1 and PC2 done, the ticket expired before the PreCommit
    # landed, a new ticket drawn: PC1 seals again (it used to refuse: "past PreCommit1")
    c = ctx(tmp_path, 4)
    new_ticket = bytes(range(100, 132))
    pc1 = TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=TICKET))
    pc2 = TASKS["PC2"](c, P.PC2Params(ticket=TICKET))
    assert load_meta(c.sector_dir).stage == "pc2"
    again = TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=new_ticket))
    assert again.comm_d == pc1.comm_d and again.replica_id != pc1.replica_id
    assert load_meta(c.sector_dir).stage == "pc1" and not (c.sector_dir / "sealed").exists()
    for stale in (lambda: TASKS["PC2"](c, P.PC2Params(ticket=TICKET)),
                  lambda: TASKS["C1"](c, P.C1Params(seed=SEED, ticket=TICKET))):
        with pytest.raises(ValueError, match=f"sealed with ticket {new_ticket.hex()[:16]}, not "
                                             f"{TICKET.hex()[:16]}: PreCommit1 must run with it first"):
            stale()
    new = TASKS["PC2"](c, P.PC2Params(ticket=new_ticket))
    assert new.comm_r != pc2.comm_r
    assert TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=new_ticket)) == again   # recorded
    proof = TASKS["C1"](c, P.C1Params(seed=SEED, ticket=new_ticket)).proof
    assert verify_seal(seal_proof=5, miner=1000, sector=4, ticket=new_ticket, seed=SEED,
                       comm_d=new.comm_d, comm_r=new.comm_r, proof=proof)


def test_a_cc_sector_snapped_up_through_the_table_and_reruns_are_harmless(tmp_path):
    """SnapDeals as the worker runs it: AP into DIR/update, RU, PR1, FRU, then the release
    of the sector key; each again after a crash gives the same; the piece unseals."""
    from zqnode.proofs import update
    c = ctx(tmp_path, number=5)
    TASKS["PC1"](c, P.PC1Params(seal_proof=5, ticket=TICKET))            # a CC sector, finalized
    cc = TASKS["PC2"](c, P.PC2Params())
    TASKS["FIN"](c, P.FINParams())
    piece = b"deal data " * 100
    TASKS["AP"](c, P.APParams(seal_proof=5, piece=b"an aborted upgrade's piece " * 20, update=True))
    assert TASKS["FRU"](c, P.FRUParams(drop_update=True)).removed == ["update"]     # AbortUpgrade
    ap = TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece, update=True))
    assert TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece, update=True)) == ap
    assert load_meta(c.sector_dir).comm_r == cc.comm_r.hex()              # the CC sector, untouched
    with pytest.raises(ValueError, match="not the CC sector"):
        TASKS["RU"](c, P.RUParams(comm_r_old=b"\x01" * 32))
    ru = TASKS["RU"](c, P.RUParams(comm_r_old=cc.comm_r))
    assert TASKS["RU"](c, P.RUParams(comm_r_old=cc.comm_r)) == ru          # recorded
    pr1 = TASKS["PR1"](c, P.PR1Params(comm_r_new=ru.comm_r_new))
    assert update.verify_update(update_proof=0, comm_r_old=cc.comm_r, comm_d_new=ru.comm_d_new,
                                comm_r_new=ru.comm_r_new, proof=pr1.proof)
    TASKS["FRU"](c, P.FRUParams())
    with pytest.raises(ValueError, match="the sector key stays"):           # not the chain's comm_r
        TASKS["FRU"](c, P.FRUParams(release_key=True, comm_r_new=cc.comm_r))
    TASKS["FRU"](c, P.FRUParams(release_key=True, comm_r_new=ru.comm_r_new))
    assert TASKS["FRU"](c, P.FRUParams(release_key=True, comm_r_new=ru.comm_r_new)).removed == [
        "sealed (the sector key)"]
    with pytest.raises(ValueError, match="cannot be dropped"):               # an abort comes too late
        TASKS["FRU"](c, P.FRUParams(drop_update=True))
    assert TASKS["FRU"](c, P.FRUParams()).removed == []                   # a re-run after the release
    assert load_meta(c.sector_dir).comm_r == ru.comm_r_new.hex()
    assert TASKS["UNS"](c, P.UNSParams(piece=0)).data == piece
    wdp = TASKS["WDP"](c, P.WDPParams(seal_proof=5, randomness=bytes(32), sectors=[(5, ru.comm_r_new)]))
    assert wdp.skipped == []
    with pytest.raises(ValueError, match="not a committed-capacity sector"):   # it holds data now
        TASKS["AP"](c, P.APParams(seal_proof=5, piece=piece, update=True))
