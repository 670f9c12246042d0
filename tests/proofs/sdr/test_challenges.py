import hashlib

import pytest

from zqnode.proofs.sdr.challenges import (
    ChallengeError, interactive_challenges, ni_challenges, porep_challenges, synthetic_challenges,
    synthetic_indexes, synthetic_porep_challenges,
)

RID = bytes.fromhex("2940faa406e4c6cbad015e2b08e76fd9e3b0e5b852cea7f8174c02ba33039a01")
SEED = bytes(range(32))
COMM_R = bytes([7]) * 32


def test_formula_written_out():
    nodes = 1 << 30
    got = interactive_challenges(RID, SEED, nodes, 18, 3)
    want = []
    for j in range(54, 72):
        digest = hashlib.sha256(RID + SEED + j.to_bytes(4, "little")).digest()
        want.append(int.from_bytes(digest, "little") % (nodes - 1) + 1)
    assert got == want


def test_partitions_concatenate():
    # challenges.rs: one partition of 180 equals ten partitions of 18 in order.
    whole = interactive_challenges(RID, SEED, 1 << 30, 180, 0)
    parts = [c for k in range(10) for c in interactive_challenges(RID, SEED, 1 << 30, 18, k)]
    assert whole == parts
    assert len(set(whole)) == 180


def test_never_node_zero():
    got = interactive_challenges(RID, SEED, 2, 50, 0) + interactive_challenges(RID, SEED, 3, 50, 0)
    assert set(got[:50]) == {1} and set(got[50:]) == {1, 2}


def test_ni_formula_written_out():
    got = ni_challenges(RID, COMM_R, 64, 2, 12)
    tag = b"filecoin.io|PoRep|1|NonInteractive|1"
    want = [int.from_bytes(hashlib.sha256(tag + RID + COMM_R + j.to_bytes(4, "little")).digest(),
                           "little") % 63 + 1 for j in (24, 25)]
    assert got == want


def test_porep_challenges_per_proof():
    small = porep_challenges("StackedDrg2KiBV1_1", RID, SEED)
    assert small == [interactive_challenges(RID, SEED, 64, 2, 0)]
    big = porep_challenges(8, RID, SEED)
    assert [len(p) for p in big] == [18] * 10
    assert all(1 <= c < 1 << 30 for p in big for c in p)
    ni = porep_challenges(15, RID, comm_r=COMM_R)
    assert [len(p) for p in ni] == [2] * 13
    assert ni[12] == ni_challenges(RID, COMM_R, 64, 2, 12)


def test_synthetic_challenges_against_rust_fil_proofs():
    # challenges.rs test_synth_challenges_against_hardcoded: 2^10 nodes, replica_id = Fr(55),
    # comm_r = Fr(101), 21 synthetic challenges, 10 PoRep challenges selected with [1; 32].
    rid, comm_r = (55).to_bytes(32, "little"), (101).to_bytes(32, "little")
    synth = synthetic_challenges(rid, comm_r, 1 << 10, 0, 21)
    assert synth == [178, 297, 869, 211, 875, 477, 94, 781, 124, 332, 856, 801, 176, 692, 429, 691,
                     290, 204, 986, 210, 973]
    assert [synthetic_challenges(rid, comm_r, 1 << 10, i, 1)[0] for i in range(21)] == synth   # seeking
    picked = [synth[i] for i in synthetic_indexes(rid, bytes([1]) * 32, 21, 10, 0)]
    assert picked == [176, 781, 801, 986, 290, 211, 692, 856, 986, 332]
    # Partitions are slices of one selection (challenges.rs test_synth_challenges_32gib).
    whole = synthetic_indexes(rid, SEED, 1 << 18, 180, 0)
    assert [i for k in range(10) for i in synthetic_indexes(rid, SEED, 1 << 18, 18, k)] == whole
    assert porep_challenges(10, RID, SEED, COMM_R) == [
        synthetic_porep_challenges(RID, COMM_R, SEED, 64, 2, 0)]


@pytest.mark.parametrize("call", [
    lambda: porep_challenges(10, RID, SEED),                  # synthetic needs comm_r too
    lambda: porep_challenges(10, RID, comm_r=COMM_R),         # and the seed
    lambda: synthetic_challenges(RID, COMM_R, 64, 60, 5),     # past the 64 synthetic ones
    lambda: synthetic_challenges(RID, COMM_R, 64, 1.5, 1),
    lambda: synthetic_indexes(RID, SEED, True, 2, 0),
    lambda: synthetic_indexes(RID, SEED, (1 << 18) + 1, 2, 0),
    lambda: porep_challenges(5, RID),                         # no seed
    lambda: porep_challenges(15, RID, SEED),                  # NI needs comm_r
    lambda: interactive_challenges(RID[:31], SEED, 64, 2, 0),
    lambda: interactive_challenges(RID, "00" * 32, 64, 2, 0),
    lambda: interactive_challenges(RID, SEED, 1, 2, 0),
    lambda: interactive_challenges(RID, SEED, 1 << 32, 2, 0),
    lambda: interactive_challenges(RID, SEED, 64, 0, 0),
    lambda: interactive_challenges(RID, SEED, 64, 2, -1),
    lambda: ni_challenges(RID, bytes(31), 64, 2, 0),
])
def test_bad_inputs(call):
    with pytest.raises(ChallengeError):
        call()
