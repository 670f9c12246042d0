"""The miner methods' DAG-CBOR against published bytes: real mainnet messages from
filecoin-project/test-vectors (corpus/extracted/*/fil_1_storageminer/<Method>/Ok/*.json,
commit 195bc065973ec35826621823964a5c3cbe5fa56d, their params: element 9 of the message)
and go-state-types' serialization tests (batch/batch_return_test.go,
builtin/v16/miner/miner_types_test.go). The layouts of these methods have not changed
since those messages; their PoSt proof type (8) is a V1 one, 13 is today's."""
import pytest
from hypothesis import given, settings, strategies as st

from zqnode.nodes.chain.filecoin import dagcbor
from zqnode.nodes.chain.filecoin.dagcbor import BitField, CborError, Cid
from zqnode.nodes.chain.filecoin.methods import (
    METHODS, BatchReturn, DeclareFaultsParams, DeclareFaultsRecoveredParams, ExpirationExtension2,
    ExtendSectorExpiration2Params, PieceActivationManifest, PoStPartition, PoStProof,
    PreCommitSectorBatchParams2, ProveCommitSectors3Params, ProveReplicaUpdates3Params, SectorActivationManifest,
    SectorClaim, SectorUpdateManifest,
    SectorDeclaration, SectorPreCommitInfo, SubmitWindowedPoStParams, TerminateSectorsParams,
    TerminateSectorsReturn)
from zqnode.proofs.cid import parse_sealed_cid, piece_cid_v1, sealed_cid

FAULTS = [  # DeclareFaults-Ok-1, -8, -4, -5: (params, [(deadline, partition, sectors)])
    ("81818318220048e05b9f60c5cc3c42", [(34, 0, [81247, 81249, 81250, 81260, 82400])]),
    ("818183070044e03d7020", [(7, 0, [49391])]),
    ("818283182200496017171390e05249018318220147c038151390a016",
     [(34, 0, [1074142267, 1074142269, 1074142274, 1074142279, 1074142280]), (34, 1, [1074140358, 1074140365])]),
    ("81818303005828e0fe28910171158864404e03c21890c78070068431209c01a10c88572605d21910d08098252d6401",
     [(3, 0, [9207, 9353, 9656, 9803, 9971, 10112, 10256, 10413, 10554, 10711, 10860, 10955, 11231,
              11389, 11550, 11653, 11759, 11860])]),
]
RECOVERIES = [  # DeclareFaultsRecovered-Ok-3, -4
    ("818183000043743a4e", [(0, 0, [0, 1, 2, 4, 5, 6, 10])]),
    ("8181830500581fc0712a9603a188be40b39c7e815a2f8203a576de057add400bf4aa31146805",
     [(5, 0, [10638, 11045, 11066, 11445, 11455, 11468, 11850, 11857, 11865, 12252, 12257, 12271,
              12639, 12647, 12659, 12996, 13004, 13015, 13278, 13284])]),
]
POST_1 = ("85028182004081820858c0979ce51c9b012a4c97ac85c592a00ea429e81e2bb22163a1d8cfb4d51dbdfe7f5d746eb3b9"
          "5a45c99b238fdbe8179e7e80448bd2c5521736f60e813639c03758c0c2979a55433afe39b41fd3839b2a08d60e87b9cfb9"
          "46e176ee945a51db20f80cebaaa4c783d4d9539001e1035a7e1609428189e2bb7a9b6bf971fce0d4e0854e5430bacfdfd8"
          "2a7b8f3365bd2be3e58cca884fbc1153ffbb6fc5882732c07ae1b4fb68dd1537848ccfcc0281070df6cfb7c736bd32ddfe"
          "12dac43a411c28961a00010d6c5820e2208ffffab624ea95b157c7c0c4bde4442ae22b6c7af9d52d92d3cc38749c44")
POST_2 = ("850b8182004081820858c0ad843809c4df3f7f3aecdd31518fcdf35c28dc94845e486b0adac7709c72b03223bf56193c"
          "b6a79cd2ae350cac14cde88851c4a1cae2123b38da96f473fcff0269d7ca42795338724f12c981ae738f5323f9abebb697"
          "d8927db1485fa2a3bf6d041b1fa2e664b85bd06e877a747f6bfcf9b7f18f2a70f09b3300e6ec96dd0e493e2a252a32b9ea"
          "b11e7ea6f276763c2291b694043bf306fff3a7306ea5bc2e6146f42560c704295408a763cceb6dff2acaeb4dd432222eaa"
          "5729127c8850479819e0ca5820fee08c7f9b6e397ff478d790218f49ffa108abdf6a25698567a72ffa556fdf5c")
# PreCommitSector-Ok-1, actors v1's 10-field layout: its first six fields are today's
OLD_PRECOMMIT = ("8a031a000928bbd82a5829000182e20381e80220bbb94dd0236ebc2d527a88d1e29a59c183c6adff427894b17ea7b1d"
                 "6e2920e581a00010886801a0018b545f4000000")


def _declarations(params):
    return [(d.deadline, d.partition, d.sectors.members(100)) for d in params]


@pytest.mark.parametrize("data, want", FAULTS)
def test_declare_faults_mainnet(data, want):
    params = dagcbor.decode(bytes.fromhex(data), DeclareFaultsParams)
    assert _declarations(params.faults) == want
    built = DeclareFaultsParams(faults=[SectorDeclaration(deadline=d, partition=p, sectors=BitField.of(s))
                                        for d, p, s in want])
    assert dagcbor.encode(built).hex() == data


@pytest.mark.parametrize("data, want", RECOVERIES)
def test_declare_faults_recovered_mainnet(data, want):
    params = dagcbor.decode(bytes.fromhex(data), DeclareFaultsRecoveredParams)
    assert _declarations(params.recoveries) == want
    assert dagcbor.encode(params).hex() == data


@pytest.mark.parametrize("data, deadline, epoch", [(POST_1, 2, 68972), (POST_2, 11, 57546)])
def test_submit_windowed_post_mainnet(data, deadline, epoch):
    params = dagcbor.decode(bytes.fromhex(data), SubmitWindowedPoStParams)
    assert (params.deadline, params.chain_commit_epoch) == (deadline, epoch)
    assert params.partitions == [PoStPartition(index=0, skipped=BitField.of([]))]
    assert [p.post_proof for p in params.proofs] == [8] and len(params.proofs[0].proof_bytes) == 192
    assert len(params.chain_commit_rand) == 32
    built = SubmitWindowedPoStParams(deadline=deadline, partitions=[PoStPartition(index=0, skipped=BitField.of([]))],
                                     proofs=[PoStProof(post_proof=8, proof_bytes=params.proofs[0].proof_bytes)],
                                     chain_commit_epoch=epoch, chain_commit_rand=params.chain_commit_rand)
    assert dagcbor.encode(built).hex() == data


def test_pre_commit_fields_match_a_mainnet_pre_commit():
    comm_r = bytes.fromhex("bbb94dd0236ebc2d527a88d1e29a59c183c6adff427894b17ea7b1d6e2920e58")
    cid = Cid.parse(sealed_cid(comm_r))
    assert str(cid) == "bagboea4b5abcbo5zjxicg3v4fvjhvcgr4knftqmdy2w76qtyssyx5j5r23rjedsy"
    info = SectorPreCommitInfo(seal_proof=3, sector_number=600251, sealed_cid=cid, seal_rand_epoch=67718,
                               deal_ids=[], expiration=1619269, unsealed_cid=None)
    ours, theirs = dagcbor.encode(info).hex(), OLD_PRECOMMIT
    assert ours[:2] == "87" and ours.endswith("f6")
    assert ours[2:-2] == theirs[2:-len("f4000000")]
    assert parse_sealed_cid(str(dagcbor.decode(dagcbor.encode(info), SectorPreCommitInfo).sealed_cid)) == comm_r


@pytest.mark.parametrize("value, data", [   # go-state-types batch/batch_return_test.go
    (BatchReturn(success_count=0, fail_codes=[]), "820080"),
    (BatchReturn(success_count=1, fail_codes=[]), "820180"),
    (BatchReturn(success_count=0, fail_codes=[[0, 16]]), "820081820010"),
    (BatchReturn(success_count=2, fail_codes=[[1, 7], [2, 20], [4, 16]]), "820283820107820214820410"),
])
def test_batch_return(value, data):
    decoded = dagcbor.decode(bytes.fromhex(data), BatchReturn)
    assert dagcbor.encode(decoded).hex() == data
    assert [(f.idx, f.code) for f in decoded.fail_codes] == [tuple(f) for f in value.fail_codes]


def test_terminate_return_and_null_and_negatives():
    assert dagcbor.encode(TerminateSectorsReturn(done=True)).hex() == "81f5"
    assert dagcbor.decode(bytes.fromhex("81f4"), TerminateSectorsReturn).done is False
    info = SectorPreCommitInfo(seal_proof=-1, sector_number=0, sealed_cid=Cid.parse(sealed_cid(bytes(32))),
                               seal_rand_epoch=-1, deal_ids=[], expiration=0, unsealed_cid=None)
    data = dagcbor.encode(info)
    assert data[1:2] == b"\x20" and data.endswith(b"\x80\x00\xf6")     # -1, [] and null as cbor-gen
    assert dagcbor.decode(data, SectorPreCommitInfo) == info


def _all_methods():
    cid_r, cid_d = Cid.parse(sealed_cid(bytes(range(32)))), Cid.parse(piece_cid_v1(bytes(32)))
    decl = SectorDeclaration(deadline=47, partition=2, sectors=BitField.of([1, 2, 3, 100]))
    return [
        PreCommitSectorBatchParams2(sectors=[SectorPreCommitInfo(
            seal_proof=8, sector_number=300, sealed_cid=cid_r, seal_rand_epoch=-1, deal_ids=[7],
            expiration=1_000_000, unsealed_cid=cid_d)]),
        ProveCommitSectors3Params(
            sector_activations=[SectorActivationManifest(sector_number=3, pieces=[PieceActivationManifest(
                cid=cid_d, size=2048, verified_allocation_key=None, notify=[])])],
            sector_proofs=[b"\x01\x02"], aggregate_proof=b"", aggregate_proof_type=None,
            require_activation_success=True, require_notification_success=False),
        ProveReplicaUpdates3Params(
            sector_updates=[SectorUpdateManifest(sector=3, deadline=4, partition=0, new_sealed_cid=cid_r, pieces=[
                PieceActivationManifest(cid=cid_d, size=2048, verified_allocation_key=None, notify=[])])],
            sector_proofs=[b"\x07"], aggregate_proof=b"", update_proofs_type=3, aggregate_proof_type=None,
            require_activation_success=True, require_notification_success=False),
        SubmitWindowedPoStParams(deadline=2, partitions=[PoStPartition(index=0, skipped=BitField.of([5]))],
                                 proofs=[PoStProof(post_proof=13, proof_bytes=b"\xaa" * 4)],
                                 chain_commit_epoch=100, chain_commit_rand=b"\x11" * 32),
        DeclareFaultsParams(faults=[decl]), DeclareFaultsRecoveredParams(recoveries=[decl]),
        TerminateSectorsParams(terminations=[decl]),
        ExtendSectorExpiration2Params(extensions=[ExpirationExtension2(
            deadline=1, partition=2, sectors=BitField.of([1]), new_expiration=1000,
            sectors_with_claims=[SectorClaim(sector_number=5, maintain_claims=[10], drop_claims=[])])]),
    ]


def test_every_method_round_trips_and_is_known():
    params = _all_methods()
    assert {type(p) for p in params} == {kinds[0] for kinds in METHODS.values()}
    for p in params:
        assert dagcbor.decode(dagcbor.encode(p), type(p)) == p


@pytest.mark.parametrize("data, why", [
    ("81818318220048e05b9f60c5cc3c4200", "canonical"),                 # a byte after the value
    ("818183182200d82a450001000000", "expected a BitField"),          # a CID for a bitfield
    ("9f8183182200410cff", "indefinite"),
    ("8181831900220041 0c".replace(" ", ""), "canonical"),             # 34 in two bytes
    ("818184182200410c00", "at most length 3"),                       # a fourth field
    ("818182182200", "at least length 3"),
    ("a10102", "map key"), ("a1616101", "Expected `array`"), ("c24101", "tag"), ("d81c8100", "tag"),
    ("818183182200410d", "version"), ("81818320 00 410c".replace(" ", ""), ">= 0"),
    ("f93c00", "Expected `array`"), ("81" * 40 + "80", "depth"),
])
def test_hostile_bytes_get_a_typed_error(data, why):
    with pytest.raises(CborError, match=why):
        dagcbor.decode(bytes.fromhex(data), DeclareFaultsParams)


def test_lists_and_bytes_are_bounded_and_links_checked():
    with pytest.raises(CborError, match="length <= 8192"):
        dagcbor.decode(bytes.fromhex("81" + "9a00002001" + "83000040" * 8193), DeclareFaultsParams)
    bad_link = dagcbor.encode(_all_methods()[0]).replace(b"\xd8\x2a\x58\x29\x00\x01", b"\xd8\x2a\x58\x29\x01\x01")
    with pytest.raises(CborError, match="0x00 then the CID"):
        dagcbor.decode(bad_link, PreCommitSectorBatchParams2)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_cbor_error(data):
    for kind, _ in METHODS.values():
        try:
            value = dagcbor.decode(data, kind)
        except CborError:
            continue
        assert dagcbor.encode(value) == data
