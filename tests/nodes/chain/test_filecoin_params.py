"""zqnode's message parameters go to the actor's and come back the same."""
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.filecoin import dagcbor, methods as F
from zqnode.nodes.chain.filecoin.dagcbor import BitField, Cid
from zqnode.nodes.chain.filecoin.params import ParamsError, from_actor, return_to_actor, to_actor
from zqnode.proofs import cid as cids
from zqnode.proofs.merkle import zero_commitment

PRECOMMIT = M.PreCommitSectorParams(sector_number=7, seal_proof=5, sealed_cid=cids.sealed_cid(b"\x01" * 32),
                                    unsealed_cid=cids.piece_cid_v1(b"\x02" * 32), seal_rand_epoch=90,
                                    expiration=5000)
DECL = M.SectorDeclaration(deadline=3, partition=0, sectors=[1, 2, 3, 9])
OURS = [
    M.PreCommitSectorBatch2Params(sectors=[PRECOMMIT]),
    M.ProveCommitSectors3Params(sector_activations=[M.SectorActivationManifest(sector_number=7)],
                                sector_proofs=[b"proof"]),
    M.ProveCommitSectors3Params(sector_activations=[M.SectorActivationManifest(sector_number=n) for n in range(4)],
                                aggregate_proof=b"agg", aggregate_proof_type=1),
    M.SubmitWindowedPoStParams(deadline=3, partitions=[M.PoStPartition(index=0, skipped=[9])], proofs=[b"p"],
                               chain_commit_epoch=80, chain_commit_rand=b"\x03" * 32),
    M.DeclareFaultsParams(faults=[DECL]), M.DeclareFaultsRecoveredParams(recoveries=[DECL]),
    M.TerminateSectorsParams(terminations=[DECL]),
    M.ExtendSectorExpiration2Params(extensions=[M.ExpirationExtension2(deadline=3, partition=0, sectors=[1],
                                                                       new_expiration=9000)]),
    M.ProveReplicaUpdates3Params(sector_updates=[M.SectorUpdateManifest(
        sector=7, deadline=3, partition=0, new_sealed_cid=cids.sealed_cid(b"\x04" * 32),
        pieces=[M.PieceManifest(cid=cids.piece_cid_v1(b"\x05" * 32), size=1024)])],
        sector_proofs=[b"update proof"], update_proofs_type=0),
]


@pytest.mark.parametrize("ours", OURS, ids=lambda p: type(p).__name__)
def test_round_trip_through_the_actors_encoding(ours):
    method, theirs = to_actor(ours, post_proof=10)
    assert F.METHODS[method][0] is type(theirs)
    assert from_actor(method, dagcbor.encode(theirs)) == ours


def test_singles_go_out_as_one_sector_batches():
    method, theirs = to_actor(PRECOMMIT)
    assert method == F.PRE_COMMIT_SECTOR_BATCH2 and len(theirs.sectors) == 1
    assert str(theirs.sectors[0].sealed_cid) == PRECOMMIT.sealed_cid
    method, theirs = to_actor(M.ProveCommitSectorParams(sector_number=7, proof=b"x"))
    assert method == F.PROVE_COMMIT_SECTORS3 and theirs.sector_proofs == [b"x"]
    assert theirs.aggregate_proof_type is None and theirs.require_activation_success


def test_a_null_comm_d_is_the_zero_comm_d():
    _, theirs = to_actor(PRECOMMIT)
    theirs.sectors[0].unsealed_cid = None
    ours = from_actor(F.PRE_COMMIT_SECTOR_BATCH2, dagcbor.encode(theirs))
    assert ours.sectors[0].unsealed_cid == cids.piece_cid_v1(zero_commitment(2048))


def test_what_the_devnet_does_not_have_is_refused():
    _, theirs = to_actor(PRECOMMIT)
    theirs.sectors[0].deal_ids = [5]
    with pytest.raises(ParamsError, match="no market"):
        from_actor(F.PRE_COMMIT_SECTOR_BATCH2, dagcbor.encode(theirs))
    decl = F.SectorDeclaration(deadline=0, partition=0, sectors=BitField([(0, 10 ** 9)]))
    with pytest.raises(ParamsError, match="addresses 1000000000 sectors, over the actor's 25000"):
        from_actor(F.DECLARE_FAULTS, dagcbor.encode(F.DeclareFaultsParams(faults=[decl])))
    # each declaration within the limit, all of them together far over it: refused on the runs
    many = [F.SectorDeclaration(deadline=0, partition=i, sectors=BitField([(0, 25_000)])) for i in range(400)]
    with pytest.raises(ParamsError, match="addresses 10000000 sectors"):
        from_actor(F.DECLARE_FAULTS, dagcbor.encode(F.DeclareFaultsParams(faults=many)))
    few = [F.SectorDeclaration(deadline=0, partition=0, sectors=BitField([(1, 1)]))] * 3001
    with pytest.raises(ParamsError, match="3001 declarations, over the actor's 3000"):
        from_actor(F.DECLARE_FAULTS_RECOVERED, dagcbor.encode(F.DeclareFaultsRecoveredParams(recoveries=few)))
    with pytest.raises(ParamsError, match="no method 6"):
        from_actor(6, b"\x80")
    with pytest.raises(ParamsError, match="bad parameters"):
        from_actor(F.DECLARE_FAULTS, b"\x81\x81\x83\x00\x00\x41\x00")
    bad_cid = F.PreCommitSectorBatchParams2(sectors=[F.SectorPreCommitInfo(
        seal_proof=5, sector_number=1, sealed_cid=Cid(b"\x01\x55\x00\x00"), seal_rand_epoch=1, deal_ids=[],
        expiration=1, unsealed_cid=None)])
    ours = from_actor(F.PRE_COMMIT_SECTOR_BATCH2, dagcbor.encode(bad_cid))   # the actor judges the CID
    assert ours.sectors[0].sealed_cid == str(Cid(b"\x01\x55\x00\x00"))


def test_returns_as_the_actors():
    ours = M.encode(M.BatchReturn(success_count=2, fail_codes=[M.FailCode(idx=1, code=16)]))
    assert return_to_actor("ProveCommitSectors3", ours).hex() == "820281820110"
    assert return_to_actor("TerminateSectors", M.encode(M.TerminateSectorsReturn(done=True))).hex() == "81f5"
    assert return_to_actor("SubmitWindowedPoSt", b"") == b""
