import pytest

from zqnode.proofs.params import (
    POST_PROOFS, SEAL_PROOFS, SECTOR_SIZES, ApiVersion, ProofParamsError, SealFeature,
    parse_sector_size, porep_id, post_proof, prover_id, replica_id, seal_proof, sector_params,
)

ZERO_2KIB_COMM_D = bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833")


def test_sector_size_table():
    rows = [(p.name, p.size, p.nodes, p.layers, p.tree_arity, p.window_post_partition_sectors,
             p.porep_partitions, p.porep_challenges_per_partition)
            for p in SECTOR_SIZES.values()]
    assert rows == [
        ("2KiB", 2048, 1 << 6, 2, (8, 0, 0), 2, 1, 2),
        ("8MiB", 8 << 20, 1 << 18, 2, (8, 0, 0), 2, 1, 2),
        ("512MiB", 512 << 20, 1 << 24, 2, (8, 0, 0), 2, 1, 2),
        ("32GiB", 32 << 30, 1 << 30, 11, (8, 8, 0), 2349, 10, 18),
        ("64GiB", 64 << 30, 1 << 31, 11, (8, 8, 2), 2300, 10, 18),
    ]


@pytest.mark.parametrize("text, size", [
    ("2KiB", 2048), ("2 KiB", 2048), ("2kib", 2048), ("8MiB", 8 << 20), ("512MiB", 512 << 20),
    ("32GiB", 32 << 30), ("64GiB", 64 << 30), ("2048", 2048), (2048, 2048),
])
def test_parse_sector_size(text, size):
    assert parse_sector_size(text) == size


@pytest.mark.parametrize("bad", ["4KiB", "2KB", "2 K i B", "", "GiB", 4096, -2048, None, True, 2.0])
def test_parse_sector_size_rejects(bad):
    with pytest.raises(ProofParamsError):
        parse_sector_size(bad)


def test_sector_params_by_name():
    assert sector_params("32GiB").nodes == 1 << 30


def test_seal_proof_names_and_versions():
    names = [p.name for p in SEAL_PROOFS]
    assert [p.id for p in SEAL_PROOFS] == list(range(20))
    assert names[:5] == ["StackedDrg2KiBV1", "StackedDrg8MiBV1", "StackedDrg512MiBV1",
                         "StackedDrg32GiBV1", "StackedDrg64GiBV1"]
    assert names[5] == "StackedDrg2KiBV1_1" and names[9] == "StackedDrg64GiBV1_1"
    assert names[10] == "StackedDrg2KiBV1_1_Feat_SyntheticPoRep"
    assert names[14] == "StackedDrg64GiBV1_1_Feat_SyntheticPoRep"
    assert names[15] == "StackedDrg2KiBV1_2_Feat_NiPoRep"
    assert names[19] == "StackedDrg64GiBV1_2_Feat_NiPoRep"
    assert [p.api_version for p in SEAL_PROOFS] == \
        [ApiVersion.V1_0_0] * 5 + [ApiVersion.V1_1_0] * 5 + [ApiVersion.V1_2_0] * 10
    assert [p.api_version.legacy for p in SEAL_PROOFS] == [True] * 5 + [False] * 15
    assert [p.feature for p in SEAL_PROOFS[10:20:5]] == [SealFeature.SYNTHETIC,
                                                          SealFeature.NON_INTERACTIVE]
    assert [p.sector_size for p in SEAL_PROOFS[3::5]] == [32 << 30] * 4


@pytest.mark.parametrize("key", [5, "5", " 5 ", "StackedDrg2KiBV1_1"])
def test_seal_proof_lookup(key):
    p = seal_proof(key)
    assert (p.id, p.name, p.sector_size) == (5, "StackedDrg2KiBV1_1", 2048)
    assert seal_proof(p) is p


def test_seal_proof_rust_name_alias():
    assert seal_proof("StackedDrg32GiBV1_2_Feat_NonInteractivePoRep").id == 18


@pytest.mark.parametrize("bad", [20, -1, "20", "StackedDrg4KiBV1", "stackeddrg2kibv1_1", "", 5.0,
                                 None, True])
def test_seal_proof_unknown(bad):
    with pytest.raises(ProofParamsError):
        seal_proof(bad)


def test_challenge_counts():
    assert [(p.porep_partitions, p.porep_challenges_per_partition, p.porep_challenges)
            for p in (seal_proof(i) for i in (5, 8, 9, 13, 15, 18))] == [
        (1, 2, 2), (10, 18, 180), (10, 18, 180), (10, 18, 180), (13, 2, 26), (126, 18, 2268)]


def test_post_proofs():
    assert [p.name for p in POST_PROOFS[::5]] == [
        "StackedDrgWinning2KiBV1", "StackedDrgWindow2KiBV1", "StackedDrgWindow2KiBV1_1"]
    assert post_proof("StackedDrgWindow32GiBV1_1").id == 13
    assert post_proof("7").name == "StackedDrgWindow512MiBV1"
    p = seal_proof("StackedDrg32GiBV1_1")
    assert (p.window_post_proof.id, p.window_post_proof_v1.id,
            p.winning_post_proof.id) == (13, 8, 3)
    assert p.window_post_proof.api_version is ApiVersion.V1_2_0
    assert seal_proof(19).window_post_proof.name == "StackedDrgWindow64GiBV1_1"
    with pytest.raises(ProofParamsError):
        post_proof(15)


def test_porep_id():
    assert porep_id(5) == bytes([5]) + bytes(31)
    assert porep_id("StackedDrg64GiBV1_2_Feat_NiPoRep") == bytes([19]) + bytes(31)
    assert seal_proof(8).porep_id == bytes([8]) + bytes(31)


def test_prover_id():
    assert prover_id(1000) == bytes([0xE8, 0x07]) + bytes(30)
    assert prover_id("t01000") == prover_id("f01000") == prover_id(1000)
    assert prover_id(0) == bytes(32)
    assert prover_id(127) == bytes([0x7F]) + bytes(31)
    assert prover_id(128) == bytes([0x80, 0x01]) + bytes(30)


@pytest.mark.parametrize("bad", [-1, 1 << 63, "t1abc", "f11000", "1000", 1.0, None])
def test_prover_id_rejects(bad):
    with pytest.raises(ProofParamsError):
        prover_id(bad)


def test_replica_id_lotus_bench_example():
    # PROOFS.md section 5: 2 KiB of zeros, t01000, sector 1, zero ticket, StackedDrg2KiBV1_1.
    rid = replica_id(prover_id("t01000"), 1, bytes(32), ZERO_2KIB_COMM_D, "StackedDrg2KiBV1_1")
    assert rid.hex() == "2940faa406e4c6cbad015e2b08e76fd9e3b0e5b852cea7f8174c02ba33039a01"
    assert replica_id(prover_id(1000), 1, bytes(32), ZERO_2KIB_COMM_D, porep_id(5)) == rid


@pytest.mark.parametrize("field, value", [
    ("prover", bytes(31)), ("ticket", bytes(33)), ("comm_d", "00" * 32), ("porep", bytes(16)),
    ("porep", 20), ("sector_number", -1), ("sector_number", 1 << 64), ("sector_number", "1"),
])
def test_replica_id_rejects(field, value):
    args = dict(prover=prover_id(1000), sector_number=1, ticket=bytes(32),
                comm_d=ZERO_2KIB_COMM_D, porep=5)
    args[field] = value
    with pytest.raises(ProofParamsError):
        replica_id(**args)
